#include "adapters/connect/uri.h"

#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "adapters/connect/connect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/constants.h"
#include "protocol/status.h"
#include "protocol/tls_credentials.h"

namespace nbd::adapters {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

NbdUri ParseOk(const std::string& text) {
  absl::StatusOr<NbdUri> uri = ParseNbdUri(text);
  EXPECT_TRUE(uri.ok()) << text << ": " << uri.status();
  return uri.ok() ? *uri : NbdUri();
}

// --- Valid URIs -------------------------------------------------------------

TEST(ParseNbdUriTest, TcpHostOnly) {
  NbdUri uri = ParseOk("nbd://example.com");
  EXPECT_EQ(uri.transport, NbdUri::kTcp);
  EXPECT_FALSE(uri.tls);
  EXPECT_EQ(uri.host, "example.com");
  EXPECT_EQ(uri.port, 10809);
  EXPECT_EQ(uri.export_name, "");
  EXPECT_EQ(uri.tls_username, "");
  EXPECT_TRUE(uri.query_params.empty());
}

// The table in doc/uri.md "NBD URI export name".
TEST(ParseNbdUriTest, SpecExportNameTable) {
  EXPECT_EQ(ParseOk("nbd://example.com/disk").export_name, "disk");
  EXPECT_EQ(ParseOk("nbd+unix:///disk?socket=sock").export_name, "disk");
  EXPECT_EQ(ParseOk("nbd://example.com/").export_name, "");
  EXPECT_EQ(ParseOk("nbd://example.com").export_name, "");
  EXPECT_EQ(ParseOk("nbd://example.com//disk").export_name, "/disk");
  EXPECT_EQ(ParseOk("nbd://example.com/hello%20world").export_name,
            "hello world");
}

TEST(ParseNbdUriTest, TcpPort) {
  EXPECT_EQ(ParseOk("nbd://example.com:10810/disk").port, 10810);
  EXPECT_EQ(ParseOk("nbd://h:1/").port, 1);
  EXPECT_EQ(ParseOk("nbd://h:65535/").port, 65535);
  EXPECT_EQ(ParseOk("nbd://h:00080/").port, 80);
  // RFC 3986: an empty port is the default.
  EXPECT_EQ(ParseOk("nbd://h:/").port, 10809);
}

TEST(ParseNbdUriTest, SchemesAndAliases) {
  EXPECT_EQ(ParseOk("nbd+tcp://h/x").transport, NbdUri::kTcp);
  EXPECT_FALSE(ParseOk("nbd+tcp://h/x").tls);
  EXPECT_TRUE(ParseOk("nbds+tcp://h/x").tls);
  EXPECT_TRUE(ParseOk("nbds://h/x").tls);
  EXPECT_TRUE(ParseOk("nbds+unix:///x?socket=s").tls);
  EXPECT_TRUE(ParseOk("nbds+vsock://2/x").tls);
  // Schemes are case-insensitive; the host keeps its case.
  NbdUri upper = ParseOk("NBD+UNIX:///x?socket=s");
  EXPECT_EQ(upper.transport, NbdUri::kUnix);
  EXPECT_EQ(ParseOk("Nbds://Example.COM/x").host, "Example.COM");
}

TEST(ParseNbdUriTest, Ipv6Literals) {
  NbdUri uri = ParseOk("nbd://[::1]:1234/x");
  EXPECT_EQ(uri.host, "::1");
  EXPECT_EQ(uri.port, 1234);
  EXPECT_EQ(uri.export_name, "x");
  EXPECT_EQ(ParseOk("nbd://[::1]").port, 10809);
  EXPECT_EQ(ParseOk("nbd://[2001:db8::7]/").host, "2001:db8::7");
  EXPECT_EQ(ParseOk("nbd://[::ffff:192.0.2.1]:5/").host, "::ffff:192.0.2.1");
  // RFC 6874 zone identifiers: '%' is written %25.
  EXPECT_EQ(ParseOk("nbd://[fe80::1%25eth0]:10809/").host, "fe80::1%eth0");
}

TEST(ParseNbdUriTest, Ipv4AndEmptyHost) {
  EXPECT_EQ(ParseOk("nbd://127.0.0.1:5000/").host, "127.0.0.1");
  // No host: ConnectUri() uses localhost.
  NbdUri uri = ParseOk("nbd:///disk");
  EXPECT_EQ(uri.host, "");
  EXPECT_EQ(uri.export_name, "disk");
  EXPECT_EQ(ParseOk("nbd:/disk").export_name, "disk");
  EXPECT_EQ(ParseOk("nbd:").export_name, "");
}

TEST(ParseNbdUriTest, UserInfoIsTlsUsername) {
  EXPECT_EQ(ParseOk("nbds://alice@h/x").tls_username, "alice");
  EXPECT_EQ(ParseOk("nbds://a%40b@h/x").tls_username, "a@b");
  EXPECT_EQ(ParseOk("nbds+unix://bob@/x?socket=s").tls_username, "bob");
  EXPECT_EQ(ParseOk("nbd://@h/").tls_username, "");
}

TEST(ParseNbdUriTest, UnixSocket) {
  NbdUri uri = ParseOk("nbd+unix:///disk?socket=/tmp/nbd.sock");
  EXPECT_EQ(uri.transport, NbdUri::kUnix);
  EXPECT_EQ(uri.socket_path, "/tmp/nbd.sock");
  EXPECT_EQ(uri.export_name, "disk");
  EXPECT_TRUE(uri.query_params.empty());  // socket= is not repeated there
  // Relative paths, as in the spec's own example.
  EXPECT_EQ(ParseOk("nbd+unix:///export?socket=nbd.sock").socket_path,
            "nbd.sock");
  EXPECT_EQ(ParseOk("nbd+unix:///?socket=/tmp/a%20b%26c").socket_path,
            "/tmp/a b&c");
  // No authority at all.
  EXPECT_EQ(ParseOk("nbd+unix:/disk?socket=s").export_name, "disk");
  EXPECT_EQ(ParseOk("nbd+unix:?socket=s").socket_path, "s");
}

TEST(ParseNbdUriTest, AbstractUnixSocket) {
  NbdUri uri = ParseOk("nbd+unix:///?socket=%00/abstract");
  EXPECT_EQ(uri.socket_path, std::string("\0/abstract", 10));
}

TEST(ParseNbdUriTest, Vsock) {
  NbdUri uri = ParseOk("nbd+vsock://2/disk");
  EXPECT_EQ(uri.transport, NbdUri::kVsock);
  EXPECT_EQ(uri.vsock_cid, 2u);
  EXPECT_EQ(uri.vsock_port, 10809u);
  EXPECT_EQ(uri.export_name, "disk");
  NbdUri big = ParseOk("nbd+vsock://4294967294:4294967294");
  EXPECT_EQ(big.vsock_cid, 4294967294u);
  EXPECT_EQ(big.vsock_port, 4294967294u);
  EXPECT_EQ(ParseOk("nbd+vsock://3:12345/").vsock_port, 12345u);
  EXPECT_EQ(ParseOk("nbd+vsock://1:0/").vsock_port, 0u);
}

TEST(ParseNbdUriTest, QueryParametersKeptInOrderAndUnknownIgnored) {
  NbdUri uri = ParseOk(
      "nbd://h/x?tls-type=psk&x-foo=b%3Dr&&unknown&tls-hostname=srv&=v&");
  EXPECT_THAT(uri.query_params,
              ElementsAre(Pair("tls-type", "psk"), Pair("x-foo", "b=r"),
                          Pair("unknown", ""), Pair("tls-hostname", "srv"),
                          Pair("", "v")));
  ASSERT_NE(uri.FindQueryParam("tls-hostname"), nullptr);
  EXPECT_EQ(*uri.FindQueryParam("tls-hostname"), "srv");
  EXPECT_EQ(uri.FindQueryParam("socket"), nullptr);
  EXPECT_EQ(uri.FindQueryParam("nope"), nullptr);
  EXPECT_EQ(ParseOk("nbd://h/?").query_params.size(), 0u);
}

TEST(ParseNbdUriTest, PercentDecodingOfExportNames) {
  EXPECT_EQ(ParseOk("nbd://h/a%2Fb").export_name, "a/b");
  EXPECT_EQ(ParseOk("nbd://h/a%3fb%23c").export_name, "a?b#c");
  EXPECT_EQ(ParseOk("nbd://h/%C3%A9t%C3%A9").export_name, "\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(ParseOk("nbd://h/a+b").export_name, "a+b");  // '+' is not ' '
  EXPECT_EQ(ParseOk("nbd://h/%25").export_name, "%");
  EXPECT_EQ(ParseOk("nbd://h/a;b=c,d!$'()*@:").export_name, "a;b=c,d!$'()*@:");
  EXPECT_EQ(ParseOk("nbd://h/%01%7F").export_name, "\x01\x7f");
}

TEST(ParseNbdUriTest, ExportNameLengthLimit) {
  const std::string longest(kMaxStringLength, 'a');
  EXPECT_EQ(ParseOk("nbd://h/" + longest).export_name, longest);
  absl::StatusOr<NbdUri> too_long = ParseNbdUri("nbd://h/" + longest + "a");
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusErrno(too_long.status()), ENAMETOOLONG);
  EXPECT_THAT(too_long.status().message(), HasSubstr("4096"));
  // The limit applies after decoding.
  std::string encoded;
  for (size_t i = 0; i < kMaxStringLength; ++i) encoded += "%61";
  EXPECT_EQ(ParseOk("nbd://h/" + encoded).export_name, longest);
}

// --- Invalid URIs -----------------------------------------------------------

struct BadUri {
  std::string uri;
  std::string message;  // a substring the error message must contain
};

class BadUriTest : public ::testing::TestWithParam<BadUri> {};

TEST_P(BadUriTest, IsInvalidArgumentNamingTheProblem) {
  absl::StatusOr<NbdUri> uri = ParseNbdUri(GetParam().uri);
  ASSERT_FALSE(uri.ok()) << GetParam().uri;
  EXPECT_EQ(uri.status().code(), absl::StatusCode::kInvalidArgument)
      << uri.status();
  EXPECT_THAT(uri.status().message(), HasSubstr(GetParam().message))
      << GetParam().uri;
  EXPECT_EQ(StatusErrno(uri.status()), EINVAL);
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, BadUriTest,
    ::testing::Values(
        // Scheme.
        BadUri{"", "missing scheme"},
        BadUri{"example.com/disk", "missing scheme"},
        BadUri{":foo", "missing scheme"},
        BadUri{"http://h/", "bad NBD URI scheme 'http'"},
        BadUri{"nbd+udp://h/", "bad NBD URI scheme"},
        BadUri{"nbdx://h/", "bad NBD URI scheme"},
        // Port.
        BadUri{"nbd://h:0/", "bad port '0'"},
        BadUri{"nbd://h:65536/", "bad port '65536'"},
        BadUri{"nbd://h:abc/", "bad port 'abc'"},
        BadUri{"nbd://h:-1/", "bad port"},
        BadUri{"nbd://h:99999999999999999999999/", "bad port"},
        BadUri{"nbd://[::1]:70000/", "bad port"},
        // Percent-escapes.
        BadUri{"nbd://h/%zz", "bad percent-escape '%zz'"},
        BadUri{"nbd://h/abc%4", "bad percent-escape"},
        BadUri{"nbd://h/abc%", "bad percent-escape"},
        BadUri{"nbd+unix:///?socket=%g0", "bad percent-escape"},
        BadUri{"nbd://h/?a=%", "bad percent-escape"},
        BadUri{"nbd://us%er@h/", "bad percent-escape"},
        BadUri{"nbd://a%0Ab@h/", "user name in NBD URI contains a control"},
        BadUri{"nbd://a%0Ab/", "host contains a control character"},
        BadUri{"nbd://h%zz/", "bad percent-escape"},
        // Characters that must be encoded.
        BadUri{"nbd://h/a b", "space"},
        BadUri{"nbd://h/a\tb", "control character 0x09"},
        BadUri{"nbd://h/a\nb", "control character 0x0a"},
        BadUri{std::string("nbd://h/a\0b", 11), "control character 0x00"},
        BadUri{"nbd://h/a\x7f", "control character 0x7f"},
        BadUri{"nbd://h/\xC3\xA9", "non-ASCII byte 0xc3"},
        BadUri{"nbd://h/<x>", "'<'"}, BadUri{"nbd://h/a\"b", "'\"'"},
        BadUri{"nbd://h/a{b}", "'{'"}, BadUri{"nbd://h/a|b", "'|'"},
        BadUri{"nbd://h/a\\b", "'\\'"}, BadUri{"nbd://h/a]", "'[' or ']'"},
        BadUri{"nbd://h/?a=[", "'[' or ']'"},
        // Decoded NULs.
        BadUri{"nbd://h/a%00b", "NUL"},
        BadUri{"nbd+unix:///?socket=a%00b", "NUL"},
        BadUri{"nbd://h/?k=%00", "%00"},
        // Unix.
        BadUri{"nbd+unix:///disk", "missing the required socket="},
        BadUri{"nbds+unix:///disk?sock=x", "missing the required socket="},
        BadUri{"nbd+unix:///disk?socket=", "empty socket="},
        BadUri{"nbd+unix://localhost/disk?socket=s", "must not name a host"},
        BadUri{"nbd+unix://:10809/?socket=s", "must not name a host or port"},
        BadUri{"nbd+unix:///?socket=a&socket=b", "more than one socket="},
        BadUri{"nbd://h/x?socket=/tmp/s", "only allowed with nbd+unix"},
        BadUri{"nbd+vsock://2/x?socket=/tmp/s", "only allowed with nbd+unix"},
        // Vsock.
        BadUri{"nbd+vsock:///x", "needs a CID"},
        BadUri{"nbd+vsock:/x", "needs a CID"},
        BadUri{"nbd+vsock://host/", "bad vsock CID 'host'"},
        BadUri{"nbd+vsock://4294967295/", "bad vsock CID"},
        BadUri{"nbd+vsock://-1/", "bad vsock CID"},
        BadUri{"nbd+vsock://2:x/", "bad vsock port 'x'"},
        BadUri{"nbd+vsock://2:4294967296/", "bad vsock port"},
        // Hosts.
        BadUri{"nbd://::1/x", "must be in brackets"},
        BadUri{"nbd://::1:10809/", "must be in brackets"},
        BadUri{"nbd://[::1/x", "no closing ']'"},
        BadUri{"nbd://[zz::1]/", "bad IPv6 address 'zz::1'"},
        BadUri{"nbd://[127.0.0.1]/", "bad IPv6 address"},
        BadUri{"nbd://[::1]x/", "after ']'"},
        BadUri{"nbd://[v1.fe]/", "IPvFuture"},
        BadUri{"nbd://[fe80::1%eth0]/", "bad IPv6 zone"},
        BadUri{"nbd://[fe80::1%25]/", "bad IPv6 zone"},
        BadUri{"nbd://a%3Ab/", "contains ':'"},
        BadUri{"nbd://a@b@h/", "more than one '@'"},
        BadUri{"nbd://h]/", "bad NBD URI host"},
        // Paths and fragments.
        BadUri{"nbd:disk", "must start with '/'"},
        BadUri{"nbd+unix:disk?socket=s", "must start with '/'"},
        BadUri{"nbd://h/disk#frag", "#fragment"},
        BadUri{"nbd://h/#", "#fragment"}));

TEST(ParseNbdUriTest, ErrorNamesTheUri) {
  absl::StatusOr<NbdUri> uri = ParseNbdUri("gopher://h/");
  ASSERT_FALSE(uri.ok());
  EXPECT_THAT(uri.status().message(),
              HasSubstr("expected nbd, nbds, nbd+unix"));
}

// --- Formatting and round trips ---------------------------------------------

TEST(FormatNbdUriTest, CanonicalForms) {
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd+tcp://h:10809/disk")), "nbd://h/disk");
  EXPECT_EQ(FormatNbdUri(ParseOk("NBDS://h:1234")), "nbds://h:1234/");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://[::1]:1234/x")), "nbd://[::1]:1234/x");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://[fe80::1%25eth0]/")),
            "nbd://[fe80::1%25eth0]/");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://h/hello%20world")),
            "nbd://h/hello%20world");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://h//disk")), "nbd://h//disk");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd+unix:///disk?x=1&socket=/tmp/s")),
            "nbd+unix:///disk?socket=/tmp/s&x=1");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd+unix:///?socket=%00abs")),
            "nbd+unix:///?socket=%00abs");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbds+vsock://alice@2:10809/d")),
            "nbds+vsock://alice@2/d");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd+vsock://3:99")), "nbd+vsock://3:99/");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://a%40b@h/")), "nbd://a%40b@h/");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd:")), "nbd:///");
  EXPECT_EQ(FormatNbdUri(ParseOk("nbd://:99/")), "nbd://:99/");
}

class RoundTripTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTripTest, ParseFormatParse) {
  const NbdUri first = ParseOk(GetParam());
  const std::string formatted = FormatNbdUri(first);
  const NbdUri second = ParseOk(formatted);
  EXPECT_EQ(first, second) << GetParam() << " -> " << formatted;
  // Formatting is canonical: a second round changes nothing.
  EXPECT_EQ(FormatNbdUri(second), formatted);
}

INSTANTIATE_TEST_SUITE_P(
    Uris, RoundTripTest,
    ::testing::Values(
        "nbd://example.com", "nbd://example.com:10810/disk",
        "nbds://alice@example.com/disk", "nbd://h//disk",
        "nbd://h/hello%20world", "nbd://[::1]:1234/x",
        "nbd://[fe80::1%25eth0]/x", "nbd://[2001:db8::1]", "nbd:///disk",
        "nbd://h/%C3%A9", "nbd://h/a%2Fb%3Fc%23d%25e", "nbd+tcp://h/x",
        "nbd+unix:///disk?socket=/tmp/nbd.sock",
        "nbds+unix://bob@/d?socket=%00abstract&tls-type=psk",
        "nbd+unix:///?socket=/tmp/a%20b%26c%3Dd%3Fe%23f", "nbd+vsock://2/disk",
        "nbds+vsock://4294967294:4294967294/x",
        "nbd://h/x?tls-type=x509&tls-hostname=srv&x-a=%26%3D&flag",
        "nbd://h:65535/a;b=c,d!$'()*@:", "nbd://user%3Apass@h/"));

TEST(FormatNbdUriTest, RoundTripsArbitraryBytes) {
  std::string every_byte;
  for (int c = 1; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  std::string printable;  // user names must not contain control characters
  for (int c = 0x20; c < 0x7f; ++c) printable.push_back(static_cast<char>(c));

  NbdUri tcp;
  tcp.host = "host.example";
  tcp.port = 4242;
  tcp.export_name = every_byte;
  tcp.tls_username = printable + "\xC3\xA9";
  tcp.query_params = {{every_byte, every_byte}, {"k", ""}, {"", "v"}};
  EXPECT_EQ(ParseOk(FormatNbdUri(tcp)), tcp) << FormatNbdUri(tcp);

  NbdUri unix_uri;
  unix_uri.transport = NbdUri::kUnix;
  unix_uri.tls = true;
  unix_uri.socket_path = std::string("\0", 1) + every_byte;
  unix_uri.export_name = "/" + every_byte;
  EXPECT_EQ(ParseOk(FormatNbdUri(unix_uri)), unix_uri)
      << FormatNbdUri(unix_uri);

  NbdUri vsock;
  vsock.transport = NbdUri::kVsock;
  vsock.vsock_cid = 7;
  vsock.vsock_port = 0;
  vsock.export_name = "?#&=";
  EXPECT_EQ(ParseOk(FormatNbdUri(vsock)), vsock) << FormatNbdUri(vsock);

  NbdUri ipv6;
  ipv6.host = "fe80::1%lo";
  EXPECT_EQ(ParseOk(FormatNbdUri(ipv6)), ipv6) << FormatNbdUri(ipv6);
}

// --- TLS parameters
// -----------------------------------------------------------

TEST(CheckUriSupportedTest, AcceptsTls) {
  for (const char* text :
       {"nbds://h/x", "nbds+tcp://h/x", "nbds+unix:///x?socket=/tmp/s",
        "nbds+vsock://2/x", "nbds://h/x?tls-type=x509&tls-verify-peer=false",
        "nbds://h/x?tls-type=psk&tls-psk-file=/k"}) {
    EXPECT_TRUE(CheckUriSupported(ParseOk(text)).ok()) << text;
  }
}

TEST(CheckUriSupportedTest, RefusesTlsParametersItCannotHonour) {
  for (const char* text :
       {"nbds://h/x?tls-verify-peer=maybe", "nbds://h/x?tls-type=gpg",
        "nbds://h/x?tls-type=psk"}) {
    absl::Status status = CheckUriSupported(ParseOk(text));
    EXPECT_EQ(StatusErrno(status), EINVAL) << text;
    EXPECT_THAT(std::string(status.message()), HasSubstr("tls-")) << text;
  }
}

TEST(ApplyUriTlsTest, NbdsRequiresTlsWithTheUrisSettings) {
  TlsCredentials c;
  c.certificates_dir = "/from/options";
  c.priority = "NORMAL:-VERS-TLS1.2";
  bool require = false;
  ASSERT_TRUE(ApplyUriTls(ParseOk("nbds://alice@example.com/x?"
                                  "tls-psk-file=/k.psk&tls-verify-peer=no"),
                          &require, &c)
                  .ok());
  EXPECT_TRUE(require);
  EXPECT_EQ(c.psk_file, "/k.psk");
  EXPECT_EQ(c.username, "alice");
  EXPECT_FALSE(c.verify_peer);
  EXPECT_EQ(c.hostname, "example.com");  // the certificate name to check
  EXPECT_EQ(c.certificates_dir, "/from/options");  // not named: kept
  EXPECT_EQ(c.priority, "NORMAL:-VERS-TLS1.2");

  TlsCredentials d;
  require = false;
  ASSERT_TRUE(ApplyUriTls(ParseOk("nbds+unix:///x?socket=/s&"
                                  "tls-certificates=/pki&tls-hostname=srv&"
                                  "tls-priority=SECURE256"),
                          &require, &d)
                  .ok());
  EXPECT_TRUE(require);
  EXPECT_EQ(d.certificates_dir, "/pki");
  EXPECT_EQ(d.hostname, "srv");
  EXPECT_EQ(d.priority, "SECURE256");
  EXPECT_TRUE(d.verify_peer);

  TlsCredentials e;
  require = false;
  ASSERT_TRUE(
      ApplyUriTls(ParseOk("nbds+unix:///x?socket=/s"), &require, &e).ok());
  EXPECT_TRUE(e.hostname.empty());  // Unix: chain only, unless tls-hostname
}

TEST(ApplyUriTlsTest, PlainUrisChangeNothing) {
  TlsCredentials c;
  bool require = false;
  ASSERT_TRUE(
      ApplyUriTls(ParseOk("nbd://h/x?tls-certificates=/pki"), &require, &c)
          .ok());
  EXPECT_FALSE(require);
  EXPECT_TRUE(c.certificates_dir.empty());
}

TEST(CheckUriSupportedTest, AcceptsPlaintext) {
  for (const char* text : {"nbd://h/x", "nbd+unix:///x?socket=/tmp/s",
                           "nbd+vsock://2/x", "nbd://h/x?tls-type=psk"}) {
    EXPECT_TRUE(CheckUriSupported(ParseOk(text)).ok()) << text;
  }
}

// --- Percent-encoding helpers -----------------------------------------------

NbdUri Parsed(const std::string& text) {
  absl::StatusOr<NbdUri> u = ParseNbdUri(text);
  EXPECT_TRUE(u.ok()) << u.status();
  return u.ok() ? *u : NbdUri{};
}

void ExpectRefused(const absl::Status& s, const std::string& knob) {
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << s;
  EXPECT_EQ(StatusErrno(s), EPERM) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(knob));
}

TEST(CheckUriPolicyTest, DefaultsAreLibnbds) {
  const UriPolicy d;
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbd://h/x"), d).ok());
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbds+unix:///?socket=/s"), d).ok());
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbd+vsock://2"), d).ok());
  // Parameters that read no file are fine.
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbds://h/?tls-verify-peer=false&"
                                    "tls-hostname=x&tls-priority=NORMAL"),
                             d)
                  .ok());
  // Files are not, by default.
  ExpectRefused(CheckUriPolicy(Parsed("nbds://h/?tls-psk-file=/etc/shadow"), d),
                "UriPolicy::local_files");
  ExpectRefused(
      CheckUriPolicy(Parsed("nbds://h/?tls-certificates=/root/.pki"), d),
      "tls-certificates");
  EXPECT_TRUE(
      CheckUriPolicy(Parsed("nbds://h/?tls-psk-file=/k"), UriPolicy::Trusted())
          .ok());
}

TEST(CheckUriPolicyTest, TransportsAndTls) {
  UriPolicy tcp_only;
  tcp_only.transports = UriPolicy::kTcp;
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbd://h"), tcp_only).ok());
  ExpectRefused(CheckUriPolicy(Parsed("nbd+unix:///?socket=/s"), tcp_only),
                "Unix socket transport");
  ExpectRefused(CheckUriPolicy(Parsed("nbd+vsock://3"), tcp_only),
                "vsock transport");
  UriPolicy no_tls;
  no_tls.tls = UriPolicy::Tls::kDisable;
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbd://h"), no_tls).ok());
  ExpectRefused(CheckUriPolicy(Parsed("nbds://h"), no_tls), "UriPolicy::tls");
  UriPolicy tls_only;
  tls_only.tls = UriPolicy::Tls::kRequire;
  EXPECT_TRUE(CheckUriPolicy(Parsed("nbds://h"), tls_only).ok());
  ExpectRefused(CheckUriPolicy(Parsed("nbd+unix:///?socket=/s"), tls_only),
                "requires nbds");
}

// ConnectUri checks the policy before it touches the network: nothing
// listens on this socket, yet the error is the policy's.
TEST(CheckUriPolicyTest, ConnectUriRefusesBeforeConnecting) {
  absl::StatusOr<Connection> c = ConnectUri(
      "nbds+unix:///?socket=/nonexistent/sock&tls-psk-file=/etc/passwd");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(StatusErrno(c.status()), EPERM) << c.status();
  UriPolicy no_unix;
  no_unix.transports = UriPolicy::kTcp | UriPolicy::kVsock;
  c = ConnectUri("nbd+unix:///?socket=/nonexistent/sock",
                 kDefaultConnectTimeout, no_unix);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(StatusErrno(c.status()), EPERM) << c.status();
}

TEST(PercentTest, EncodeKeepsUnreservedAndRequestedBytes) {
  EXPECT_EQ(PercentEncode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(PercentEncode("a b/c"), "a%20b%2Fc");
  EXPECT_EQ(PercentEncode("a b/c", "/"), "a%20b/c");
  EXPECT_EQ(PercentEncode(std::string("\0\xff", 2)), "%00%FF");
}

TEST(PercentTest, DecodeAcceptsBothCases) {
  EXPECT_EQ(*PercentDecode("%2f%2F%41"), "//A");
  EXPECT_EQ(*PercentDecode(""), "");
  EXPECT_FALSE(PercentDecode("%").ok());
  EXPECT_FALSE(PercentDecode("%1").ok());
  EXPECT_FALSE(PercentDecode("%1g").ok());
  EXPECT_FALSE(PercentDecode("%+1").ok());
}

}  // namespace
}  // namespace nbd::adapters
