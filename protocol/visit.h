// nbd::Visit: handle an event variant (ClientEvent, ServerEvent, or any
// std::variant) with one lambda per type of interest.
//
//   while (auto e = client.PollEvent()) {
//     nbd::Visit(
//         *e,
//         [&](const nbd::CommandCompleted& c) {
//           auto* op = reinterpret_cast<Op*>(static_cast<uintptr_t>(c.tag));
//           op->Done(c.status);
//         },
//         [&](const nbd::ReadChunk& r) { Progress(r.tag, r.length); },
//         [](const auto&) {});  // every other event
//   }
//
// The lambdas form one overload set (nbd::Overloaded) and std::visit picks,
// for the alternative the variant holds, the best match by the ordinary
// overload rules. So:
//  - A generic `[](const auto&) {}` is the catch-all: an exact non-template
//    match always beats it, so it only gets the types no other lambda names.
//    Spell it `const auto&`: with `auto&` or `auto&&` the template binds a
//    non-const alternative more closely than `const T&` does and would win
//    over the specific lambdas. Without a catch-all every alternative must
//    be handled, or the call does not compile (which is how to make a visit
//    exhaustive).
//  - Every lambda must return the same type (or all return void); Visit
//    returns what the chosen lambda returns:
//      std::string name = nbd::Visit(
//          event, [](const nbd::ClientDead&) { return std::string("dead"); },
//          [](const auto&) { return std::string("other"); });
//  - The lambdas see the alternative with the variant's constness and value
//    category: take `const T&` for a const or lvalue variant, `T&` to
//    modify (or move from) an alternative of a non-const lvalue one.
// Header-only, no dependencies beyond <variant>: usable from either core's
// events and from any layer.
#ifndef NBD_PROTOCOL_VISIT_H_
#define NBD_PROTOCOL_VISIT_H_

#include <utility>
#include <variant>

namespace nbd {

// The overloaded-lambdas idiom: one callable whose operator() is every
// given lambda's. Aggregate, so `Overloaded{f, g}` deduces through the
// guide below.
template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

// std::visit(Overloaded{fs...}, variant); returns its result.
template <typename Variant, typename... Fs>
decltype(auto) Visit(Variant&& variant, Fs&&... fs) {
  return std::visit(Overloaded{std::forward<Fs>(fs)...},
                    std::forward<Variant>(variant));
}

}  // namespace nbd

#endif  // NBD_PROTOCOL_VISIT_H_
