#!/usr/bin/env python3
"""Writes the generated seed inputs of the fuzz targets in tests/fuzz.

Usage: make_seeds.py [--check] [TARGET...]   (default: every target)

Each seed is a script in the input format documented at the top of the
target's <target>_fuzzer.cc, built here from meaningful scenarios (a full
handshake, every command, every reply kind, the error paths), and written to
tests/fuzz/<target>_corpus/seed-<name>. Files in the corpus without the
`seed-` prefix come from fuzzing campaigns (libFuzzer -merge=1) and are left
alone. With --check nothing is written; the script fails if a committed
seed differs from what it would generate (run by //tests/fuzz:seeds_test,
so a change of an input format cannot leave stale seeds behind).
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def u8(v):
    return struct.pack(">B", v & 0xFF)


def u16(v):
    return struct.pack(">H", v & 0xFFFF)


def u32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


# ---- Wire constants (protocol/constants.h) ----------------------------------
NBD_MAGIC = 0x4E42444D41474943
OLDSTYLE_MAGIC = 0x00420281861253
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
EXT_REQUEST_MAGIC = 0x21E41C71
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF
EXT_REPLY_MAGIC = 0x6E8A278C

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 2, 3, 4, 5
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE = 1, 2, 4, 8
FLAG_FAST_ZERO, FLAG_PAYLOAD_LEN = 16, 32


# ---- wire_fuzzer -------------------------------------------------------------
# Selector numbers: the Decoder enum in wire_fuzzer.cc.
WIRE_DECODERS = [
    "oldstyle_greeting", "newstyle_greeting", "greeting_kind",
    "client_flags", "option_request_header", "option_reply_header",
    "export_name_reply_head", "export_name_reply", "info_request",
    "info_type", "info_export", "info_name", "info_description",
    "info_block_size", "server_reply", "meta_context_request",
    "meta_context_reply", "request", "extended_request",
    "block_status_payload", "reply_magic", "simple_reply",
    "structured_reply_header", "extended_reply_header",
    "offset_data_header", "offset_hole", "block_status", "block_status_ext",
    "error_chunk", "error_offset_chunk",
]


def wire_seeds():
    def sel(name):
        return WIRE_DECODERS.index(name)

    oldstyle = (u64(NBD_MAGIC) + u64(OLDSTYLE_MAGIC) + u64(1 << 30) +
                u16(0) + u16(0x0F) + bytes(124))
    newstyle = u64(NBD_MAGIC) + u64(IHAVEOPT) + u16(3)
    samples = {
        "oldstyle_greeting": [oldstyle, oldstyle[:100]],
        "newstyle_greeting": [newstyle, newstyle[:17]],
        "greeting_kind": [newstyle[:16], oldstyle[:16],
                          u64(NBD_MAGIC) + u64(0)],
        "client_flags": [u32(3), u32(0x80000000)],
        "option_request_header": [u64(IHAVEOPT) + u32(7) + u32(10)],
        "option_reply_header": [u64(OPT_REPLY_MAGIC) + u32(7) + u32(1) +
                                u32(0)],
        "export_name_reply_head": [u64(1 << 20) + u16(0x1ED)],
        "export_name_reply": [u64(1 << 20) + u16(3) + bytes(124),
                              u64(1 << 20) + u16(3)],
        "info_request": [u32(4) + b"disk" + u16(2) + u16(1) + u16(3),
                         u32(0) + u16(0), u32(4) + b"disk" + u16(9)],
        "info_type": [u16(3), b"\x00"],
        "info_export": [u16(0) + u64(1 << 30) + u16(0x1ED)],
        "info_name": [u16(1) + b"disk"],
        "info_description": [u16(2) + b"a disk"],
        "info_block_size": [u16(3) + u32(512) + u32(4096) + u32(1 << 25)],
        "server_reply": [u32(4) + b"disk" + b"description",
                         u32(100) + b"x"],
        "meta_context_request": [
            u32(4) + b"disk" + u32(2) + u32(15) + b"base:allocation" +
            u32(5) + b"qemu:",
            u32(0) + u32(0x40000000)],
        "meta_context_reply": [u32(1) + b"base:allocation"],
        "request": [u32(REQUEST_MAGIC) + u16(FLAG_FUA) + u16(CMD_WRITE) +
                    u64(7) + u64(4096) + u32(512)],
        "extended_request": [u32(EXT_REQUEST_MAGIC) +
                             u16(FLAG_PAYLOAD_LEN) + u16(CMD_WRITE) +
                             u64(8) + u64(0) + u64(512)],
        "block_status_payload": [u64(1 << 20) + u32(1) + u32(2), u64(1)],
        "reply_magic": [u32(SIMPLE_REPLY_MAGIC)],
        "simple_reply": [u32(SIMPLE_REPLY_MAGIC) + u32(5) + u64(9)],
        "structured_reply_header": [u32(STRUCTURED_REPLY_MAGIC) + u16(1) +
                                    u16(1) + u64(3) + u32(520)],
        "extended_reply_header": [u32(EXT_REPLY_MAGIC) + u16(1) + u16(6) +
                                  u64(3) + u64(0) + u64(40)],
        "offset_data_header": [u64(4096) + b"data", u64(1)],
        "offset_hole": [u64(4096) + u32(512), u64(0) + u32(0)],
        "block_status": [u32(1) + u32(4096) + u32(3) + u32(512) + u32(0),
                         u32(1)],
        "block_status_ext": [u32(1) + u32(1) + u64(1 << 33) + u64(3),
                             u32(1) + u32(2) + u64(1) + u64(0)],
        "error_chunk": [u32(5) + u16(4) + b"oops", u32(5) + u16(9) + b"x"],
        "error_offset_chunk": [u32(5) + u16(2) + b"no" + u64(4096)],
    }
    seeds = {}
    for name, inputs in samples.items():
        for i, payload in enumerate(inputs):
            params = [0]
            if name in ("block_status", "block_status_ext"):
                params = [0, 1]
            if name == "export_name_reply":
                params = [i]  # the second sample is the NO_ZEROES form
            for p in params:
                seeds["%s-%d-p%d" % (name, i, p)] = u8(sel(name)) + u8(p) + \
                    payload
    return seeds


# ---- uri_fuzzer --------------------------------------------------------------
def uri_seeds():
    uris = [
        "nbd://example.com", "nbd://example.com:10810/disk",
        "nbds://alice@example.com/disk", "nbd://h//disk",
        "nbd://h/hello%20world", "nbd://[::1]:1234/x",
        "nbd://[fe80::1%25eth0]/x", "nbd://[2001:db8::1]", "nbd:///disk",
        "nbd://h/%C3%A9", "nbd://h/a%2Fb%3Fc%23d%25e", "nbd+tcp://h/x",
        "nbd+unix:///disk?socket=/tmp/nbd.sock",
        "nbds+unix://bob@/d?socket=%00abstract&tls-type=psk",
        "nbd+unix:///?socket=/tmp/a%20b%26c%3Dd%3Fe%23f",
        "nbd+vsock://2/disk", "nbds+vsock://4294967294:4294967294/x",
        "nbd://h/x?tls-type=x509&tls-hostname=srv&x-a=%26%3D&flag",
        "nbd://h:65535/a;b=c,d!$'()*@:", "nbd://user%3Apass@h/",
        "nbd:", "nbd://:99/", "NBDS://h:1234", "nbd://h:0/",
        "nbd://h:65536/", "nbd://h/#frag", "nbd://h/%zz", "nbd://h/a b",
        "nbd+unix:///x", "nbd+unix://h/x?socket=s", "nbd+vsock://:1/x",
        "nbd://h/x?socket=/s", "nbd+unix:///x?socket=a&socket=b",
        "nbd://[::1/x", "nbd://[nothex]/", "http://h/x", "nbd://h/%00",
        "nbd://h/" + "a" * 4097, "nbd://h?x=1",
    ]
    return {"uri-%02d" % i: u.encode() for i, u in enumerate(uris)}


# ---- server_fuzzer -----------------------------------------------------------
# Opcodes and message kinds: the Op enum and Message() in server_fuzzer.cc.
S_RAW, S_MSG, S_DELIVER, S_EOF, S_TERR, S_OUTPUT, S_POLL = 0, 1, 2, 3, 4, 5, 6
S_REPLY, S_REPLY_ALL, S_BAD_COMMIT, S_RELEASE = 7, 8, 9, 10
M_FLAGS, M_GO, M_INFO, M_EXPORT_NAME, M_LIST, M_SR, M_EH = 0, 1, 2, 3, 4, 5, 6
M_LIST_META, M_SET_META, M_OTHER, M_REQUEST, M_BS_PAYLOAD = 7, 8, 9, 10, 11
R_OK, R_ERROR, R_READ, R_READ_ERROR, R_BS, R_MISFIT, R_NATURAL = range(7)


def s_config(bits=0x07, caps=0x7E, more=0x00, size=0x10, in_flight=0,
             misc=0x00):
    return bytes([bits, caps, more, size, in_flight, misc])


def s_msg(kind, *args):
    return u8(S_MSG) + u8(kind) + b"".join(args)


def s_deliver(mode=0):
    return u8(S_DELIVER) + u8(mode)


def s_output(sel=7, amount=0):
    return u8(S_OUTPUT) + u8(sel) + u16(amount)


def s_poll(count=0):
    return u8(S_POLL) + u8(count)


def s_request(cmd, flags=0, offset=0, length=512, form=0):
    # sel: offset as u16 (1), length as u16 (1 << 2).
    return s_msg(M_REQUEST, u8(cmd), u8(flags), u8(1 | (1 << 2)),
                 u16(offset), u16(length), u8(form))


def s_handshake(go=True, sr=True, eh=False, meta=True, deliver=0):
    out = s_msg(M_FLAGS, u8(3))
    if eh:
        out += s_msg(M_EH, u8(0))
    if sr:
        out += s_msg(M_SR, u8(0))
    if meta:
        out += s_msg(M_SET_META, u8(0), u8(1), u8(0))
    if go:
        out += s_msg(M_GO, u8(0), u8(2), u8(3), u8(1))
    else:
        out += s_msg(M_EXPORT_NAME, u8(0))
    return out + s_deliver(deliver) + s_output() + s_poll()


def s_every_command(form=0):
    out = b""
    for cmd, flags in [(CMD_WRITE, 0), (CMD_READ, 0), (CMD_FLUSH, 0),
                       (CMD_TRIM, 0), (CMD_CACHE, 0),
                       (CMD_WRITE_ZEROES, FLAG_NO_HOLE),
                       (CMD_BLOCK_STATUS, 0), (CMD_WRITE, FLAG_FUA),
                       (CMD_READ, FLAG_DF)]:
        out += s_request(cmd, flags, 4096, 4096, form)
    return out


def server_seeds():
    seeds = {}
    natural = u8(S_REPLY_ALL)
    drain = s_output() + s_poll()
    disc = s_request(CMD_DISC) + s_deliver() + drain

    def body(handshake, form=0, replies=natural, deliver=0):
        return (handshake + s_every_command(form) + s_deliver(deliver) +
                s_poll() + replies + drain + s_request(CMD_DISC) +
                s_deliver(deliver) + drain)

    # The main paths under several option sets.
    configs = {
        "structured": (s_config(0x07), dict(sr=True)),
        "extended": (s_config(0x07), dict(sr=True, eh=True)),
        "simple": (s_config(0x04), dict(sr=False, meta=False)),
        "readonly": (s_config(0x07, caps=0x01), dict()),
        "min512": (s_config(0x07, more=0x08), dict()),
        "min4096-max4096": (s_config(0x07, more=0x10 | 0x20), dict()),
        "trace-replysent": (s_config(0x1F), dict(eh=True)),
        "lent": (s_config(0x8F), dict()),
        "two-exports": (s_config(0x27), dict()),
        "small-limits": (s_config(0x47, in_flight=1), dict()),
        "unaligned-size": (s_config(0x07, size=0x81), dict()),
    }
    for name, (config, hs) in configs.items():
        form = 0
        seeds["main-" + name] = config + body(s_handshake(**hs), form)
        seeds["main-%s-export-name" % name] = config + body(
            s_handshake(go=False, **{k: v for k, v in hs.items()
                                     if k != "go"}))
        seeds["zerocopy-" + name] = config + body(
            s_handshake(deliver=0x80 | 7, **hs), deliver=0x80 | 5)
        seeds["pieces-" + name] = config + body(
            s_handshake(deliver=3, **hs), deliver=11)

    # Every reply kind, with input-chosen arguments.
    cfg = s_config(0x07)
    replies = (
        u8(S_REPLY) + u8(0) + u8(R_OK) +
        u8(S_REPLY) + u8(0) + u8(R_ERROR) + u8(1) + u8(8) +
        u8(S_REPLY) + u8(0) + u8(R_READ) + u8(3) + u8(0x40) + u8(0x81) +
        u8(0) +
        u8(S_REPLY) + u8(0) + u8(R_READ_ERROR) + u8(128) + u8(2) + u8(0x40) +
        u8(1) + u8(1) + u8(255) +
        u8(S_REPLY) + u8(0) + u8(R_BS) + u8(2) + u8(0) + u16(4) + u8(3) +
        u8(2) + u8(1) +
        u8(S_REPLY) + u8(0) + u8(R_MISFIT) + u8(0) +
        u8(S_REPLY) + u8(1) + u8(R_MISFIT) + u8(3) +
        u8(S_REPLY) + u8(2) + u8(R_MISFIT) + u8(0x84) +
        natural)
    for name, hs, conf in [("structured", dict(), cfg),
                           ("extended", dict(eh=True), cfg),
                           ("simple", dict(sr=False, meta=False),
                            s_config(0x04)),
                           ("df", dict(), s_config(0x07, caps=0xFE))]:
        seeds["replies-" + name] = conf + body(s_handshake(**hs),
                                               replies=replies)

    # Option-phase variety before GO.
    options = (s_msg(M_FLAGS, u8(3)) + s_msg(M_LIST, u8(0)) +
               s_msg(M_LIST, u8(1)) + s_msg(M_INFO, u8(0), u8(4), u8(0),
                                            u8(1), u8(2), u8(3)) +
               s_msg(M_INFO, u8(3), u8(0)) + s_msg(M_INFO, u8(4), u8(0)) +
               s_msg(M_LIST_META, u8(0), u8(3), u8(0), u8(1), u8(2)) +
               s_msg(M_LIST_META, u8(0), u8(0)) +
               s_msg(M_SET_META, u8(3), u8(1), u8(0)) +
               s_msg(M_OTHER, u8(1)) + s_msg(M_OTHER, u8(2)) +
               s_msg(M_SR, u8(1)) + s_msg(M_EH, u8(0)) + s_msg(M_SR, u8(0)) +
               s_msg(M_SET_META, u8(0), u8(2), u8(0), u8(4)) +
               s_msg(M_GO, u8(1), u8(0)) + s_deliver() + drain)
    seeds["options"] = s_config(0x07) + options + disc
    seeds["options-nolist"] = s_config(0x03) + options + disc
    seeds["options-small"] = s_config(0x47) + options + disc
    seeds["options-abort"] = s_config(0x07) + s_msg(M_FLAGS, u8(3)) + \
        s_msg(M_LIST, u8(0)) + s_msg(M_OTHER, u8(0)) + s_deliver() + drain
    seeds["options-bad-flags"] = s_config(0x07) + s_msg(M_FLAGS, u8(0x80)) + \
        s_deliver() + drain

    # Requests the session must refuse itself.
    bad = b""
    for cmd, flags, off, length, form in [
            (CMD_READ, 0, 1, 512, 0), (CMD_READ, 0, 0xFFFF, 0xFFFF, 0),
            (9, 0, 0, 512, 0), (0xFF, 0, 0, 512, 0x80 | 0x7F),
            (CMD_WRITE, 0x40, 0, 16, 0), (CMD_READ, FLAG_PAYLOAD_LEN, 0, 8, 0),
            (CMD_BLOCK_STATUS, 0, 0, 0, 0), (CMD_WRITE, 0, 0xFFFF, 512, 0),
            (CMD_READ, 0, 0, 512, 0x80)]:
        bad += s_request(cmd, flags, off, length, form | 0x40)  # raw flags
    for name, conf, hs in [("structured", s_config(0x07, more=0x08), {}),
                           ("extended", s_config(0x07, more=0x08),
                            dict(eh=True)),
                           ("readonly", s_config(0x07, caps=0x01), {})]:
        seeds["bad-requests-" + name] = conf + s_handshake(**hs) + bad + \
            s_deliver() + s_poll() + natural + drain + disc
    seeds["bs-payload"] = s_config(0x07) + s_handshake(eh=True) + \
        s_msg(M_BS_PAYLOAD, u8(0), u8(1 | 4), u16(0), u16(4096), u8(0),
              u8(1), u8(1)) + s_deliver() + s_poll() + natural + drain + disc

    # Endings: EOF at a boundary, EOF inside a message, transport errors.
    base = s_config(0x07) + s_handshake() + s_request(CMD_READ) + \
        s_deliver() + s_poll()
    seeds["end-eof-boundary"] = base + u8(S_EOF) + natural + drain
    seeds["end-eof-inside"] = base + u8(S_RAW) + u8(5) + b"\x25\x60\x95\x13" \
        b"\x00" + s_deliver() + u8(S_EOF) + natural + drain
    seeds["end-transport"] = base + u8(S_TERR) + natural + drain
    seeds["end-none"] = s_config(0x07, misc=0x08) + s_handshake() + \
        s_request(CMD_READ) + s_deliver() + s_poll()
    seeds["end-settle"] = s_config(0x07, misc=0x0C) + s_handshake() + \
        s_every_command() + s_deliver() + s_poll()
    # STARTTLS (M_OTHER 1) under ServerOptions::tls on / require; the
    # harness answers ServerStartTls with TlsHandshakeDone (or, with misc
    # bit 6, TlsHandshakeFailed). Under require a GO before STARTTLS is
    # refused with ERR_TLS_REQD.
    starttls = s_msg(M_FLAGS, u8(3)) + s_msg(M_OTHER, u8(1)) + \
        s_deliver() + s_output() + s_poll()
    after_tls = s_msg(M_EH, u8(0)) + \
        s_msg(M_SET_META, u8(0), u8(1), u8(0)) + \
        s_msg(M_GO, u8(0), u8(2), u8(3), u8(1)) + s_deliver() + drain
    for name, misc in (("on", 0x10), ("require", 0x20)):
        seeds["tls-" + name] = s_config(0x07, misc=misc) + starttls + \
            after_tls + s_every_command(1) + s_deliver() + s_poll() + \
            natural + drain + disc
    seeds["tls-require-refused"] = s_config(0x07, misc=0x20) + \
        s_msg(M_FLAGS, u8(3)) + s_msg(M_GO, u8(0), u8(2), u8(3), u8(1)) + \
        s_deliver() + drain + s_msg(M_OTHER, u8(1)) + s_deliver() + drain + \
        s_msg(M_OTHER, u8(1)) + s_deliver() + drain + after_tls + disc
    seeds["tls-fails"] = s_config(0x07, misc=0x50) + starttls + after_tls
    seeds["bad-commit"] = s_config(0x07) + u8(S_BAD_COMMIT) + \
        s_handshake() + u8(S_BAD_COMMIT) + s_output(0x80) + disc
    seeds["lent-release"] = s_config(0x8F) + s_handshake() + \
        s_request(CMD_READ, 0, 0, 4096) + s_deliver() + s_poll() + natural + \
        s_output(0, 10) + s_poll() + u8(S_RELEASE) + drain + s_poll() + \
        u8(S_RELEASE) + disc
    seeds["pause-in-flight"] = s_config(0x07, in_flight=1) + s_handshake() + \
        s_every_command() + s_deliver() + s_poll() + natural + s_deliver() + \
        s_poll() + natural + s_deliver() + s_poll() + natural + drain + disc
    return seeds


# ---- api_fuzzer --------------------------------------------------------------
# Opcodes: the Op enum in api_fuzzer.cc.
(A_READ, A_WRITE, A_FLUSH, A_TRIM, A_CACHE, A_WZ, A_BS, A_DISC, A_SHUTDOWN,
 A_OPT, A_SET_NAME, A_OUTPUT, A_POLL, A_EOF, A_TERR, A_RAW, A_P2C,
 A_PEER_REPLY, A_CRAFTED, A_CHECKS, A_TLS) = range(21)
OPT_LIST, OPT_INFO, OPT_GO, OPT_ABORT, OPT_SR, OPT_EH = 0, 1, 2, 3, 4, 5
OPT_LIST_META, OPT_SET_META = 6, 7


def a_config(bits=0x3E, b1=0x00, strict=0x3F, max_payload=0, readahead=0,
             name=0):
    return bytes([bits, b1, strict, max_payload, readahead, name])


def a_pump(times=1, deliver=0, output=0):
    one = (u8(A_OUTPUT) + u8(output) + u16(0) + u8(A_P2C) + u16(0) +
           u8(deliver) + u8(A_POLL) + u8(0))
    return one * times


def a_cmd(op, offset_blocks=0, length_blocks=1, flags=0, tag=0):
    # sel 1 | 1 << 2: offset u8 * 512, length u8 * 512.
    if op == A_FLUSH:
        return u8(A_FLUSH) + u8(flags) + u8(tag)
    return (u8(op) + u8(1 | (1 << 2)) + u8(offset_blocks) +
            u8(length_blocks) + u8(flags) + u8(tag))


def a_every_command(tag=1):
    return (a_cmd(A_WRITE, 0, 8, 0, tag) + a_cmd(A_READ, 0, 8, 0, tag + 1) +
            a_cmd(A_READ, 8, 4, 0x40, tag + 2) + a_cmd(A_FLUSH, tag=tag + 3) +
            a_cmd(A_TRIM, 16, 8, 0, tag + 4) + a_cmd(A_CACHE, 0, 8, 0, 0) +
            a_cmd(A_WZ, 24, 8, FLAG_NO_HOLE, tag + 5) +
            a_cmd(A_BS, 0, 64, 0, tag + 6) +
            a_cmd(A_WRITE, 1, 1, FLAG_FUA, tag + 7))


def api_seeds():
    seeds = {}
    reply = u8(A_PEER_REPLY) + u8(0)
    session = a_every_command() + a_pump(2) + reply + a_pump(2)
    configs = {
        "extended": a_config(),
        "structured": a_config(0x3C),
        "simple": a_config(0x30),
        "peer-no-extended": a_config(0x3E, 0x10),
        "peer-simple": a_config(0x3E, 0x30),
        "peer-readonly": a_config(0x3E, 0x40),
        "peer-min512": a_config(0x3E, 0x80),
        "trace": a_config(0xBE),
        "extra-context": a_config(0x7E),
        "small-payload": a_config(max_payload=1),
        "readahead": a_config(readahead=64),
        "no-strict": a_config(strict=0),
        "nosuch-export": a_config(name=2),
    }
    for name, config in configs.items():
        seeds["main-" + name] = config + a_pump(6) + session +             u8(A_DISC) + u8(0) + a_pump(3)
    for action in range(4):
        conf = a_config(0x3E, action << 2)
        seeds["end-%d" % action] = conf + a_pump(6) + a_every_command() +             a_pump(1)
    seeds["zero-copy"] = a_config() + a_pump(6, deliver=0x80 | 9) +         a_every_command() + a_pump(2, deliver=0x80 | 3) + reply +         a_pump(2, deliver=0x80 | 5)
    seeds["pieces"] = a_config(readahead=40) + a_pump(6, deliver=5) +         a_every_command() + a_pump(2, deliver=1) + reply +         a_pump(2, deliver=7)
    seeds["tls-allow"] = a_config(0x3E, 0x01) + a_pump(6) + session
    seeds["tls-require"] = a_config(0x3E, 0x02) + a_pump(6) + u8(A_TLS) +         u8(0) + a_pump(2)

    # Option mode: every Opt* call, then GO.
    opts = (a_pump(4) + u8(A_OPT) + u8(OPT_LIST) + a_pump(2) +
            u8(A_SET_NAME) + u8(1) + u8(A_OPT) + u8(OPT_INFO) + a_pump(2) +
            u8(A_SET_NAME) + u8(0) +
            u8(A_OPT) + u8(OPT_SR) + a_pump(2) + u8(A_OPT) + u8(OPT_EH) +
            a_pump(2) + u8(A_OPT) + u8(OPT_LIST_META) + u8(2) + u8(0) +
            u8(2) + a_pump(2) + u8(A_OPT) + u8(OPT_SET_META) + u8(1) + u8(0) +
            a_pump(2) + u8(A_OPT) + u8(OPT_GO) + a_pump(3))
    seeds["option-mode"] = a_config(0x3F) + opts + session
    seeds["option-mode-abort"] = a_config(0x3F) + a_pump(4) + u8(A_OPT) +         u8(OPT_ABORT) + a_pump(3)
    seeds["option-mode-shutdown"] = a_config(0x3F) + a_pump(4) +         u8(A_SHUTDOWN) + u8(0) + a_pump(3)

    # Shutdown with and without abandoning, pinned output.
    base = a_config() + a_pump(6) + a_every_command()
    seeds["shutdown-abandon"] = base + u8(A_SHUTDOWN) + u8(1) + a_pump(3) +         reply + a_pump(3)
    seeds["shutdown-graceful"] = base + u8(A_SHUTDOWN) + u8(0) + a_pump(2) +         reply + a_pump(3)
    seeds["pinned-abandon"] = base + u8(A_OUTPUT) + u8(1) + u16(40) +         u8(A_SHUTDOWN) + u8(1) + a_pump(3) + reply + a_pump(3)
    seeds["dropped-output"] = base + u8(A_OUTPUT) + u8(2) + u16(0) +         a_pump(2) + u8(A_EOF)
    seeds["refused-calls"] = a_config() + a_cmd(A_READ) + u8(A_OPT) +         u8(OPT_GO) + u8(A_DISC) + u8(0) + a_pump(6) + u8(A_OPT) +         u8(OPT_LIST) + u8(A_DISC) + u8(1) + u8(A_SHUTDOWN) + u8(2) +         a_cmd(A_READ, 255, 255) + u8(A_OUTPUT) + u8(0x81) + u16(0) +         u8(A_OUTPUT) + u8(0x80) + u16(0) + u8(A_CHECKS) + session
    seeds["peer-errors"] = base + a_pump(2) + u8(A_PEER_REPLY) + u8(1) +         a_pump(2)
    seeds["peer-read-errors"] = base + a_pump(2) + u8(A_PEER_REPLY) +         u8(3) + a_pump(2)
    seeds["peer-one-by-one"] = base + a_pump(2) +         (u8(A_PEER_REPLY) + u8(2) + a_pump(1)) * 10

    # Crafted replies for pending cookies instead of the peer's.
    crafted = [
        u8(0) + u8(0) + u8(0),                      # simple ok
        u8(1) + u8(1) + u8(0),                      # simple error
        u8(1) + u8(0) + u8(255) + u8(0) + u8(0),    # OFFSET_DATA
        u8(2) + u8(128) + u8(128) + u8(1) + u8(0),  # OFFSET_HOLE, done
        u8(3) + u8(5) + u8(1) + u8(0),              # ERROR, done
        u8(4) + u8(5) + u8(64) + u8(1) + u8(0),     # ERROR_OFFSET
        u8(5) + u8(2) + u16(8) + u16(56) + u8(1) + u8(0),  # BLOCK_STATUS
        u8(6) + u8(1) + u8(0),                      # NONE, done
        u8(7) + u16(0x1234) + u8(3) + u8(0) + u8(0),  # unknown type
        u8(1) + u8(0) + u8(255) + u8(0x81) + u8(0),   # other header form
    ]
    for i, c in enumerate(crafted):
        for which in (1, 7, 0xFF):
            seeds["crafted-%d-%d" % (i, which)] = base + a_pump(1) + \
                u8(A_CRAFTED) + u8(which) + c + a_pump(1)
    seeds["crafted-structured"] = a_config(0x3C) + a_pump(6) + \
        a_every_command() + a_pump(1) + b"".join(
            u8(A_CRAFTED) + u8(w) + c for w, c in enumerate(crafted)) + \
        a_pump(1)
    seeds["raw-garbage"] = base + a_pump(1) + u8(A_RAW) + u8(20) + \
        bytes(range(20)) + u8(0) + a_pump(1)
    seeds["transport-error"] = base + a_pump(1) + u8(A_TERR)
    return seeds


TARGETS = {
    "wire": wire_seeds,
    "uri": uri_seeds,
    "server": server_seeds,
    "api": api_seeds,
}


def main(argv):
    check = "--check" in argv
    names = [a for a in argv if not a.startswith("--")] or sorted(TARGETS)
    root = os.environ.get("NBD_FUZZ_SEED_ROOT", HERE)
    stale = []
    for name in names:
        corpus = os.path.join(root, name + "_corpus")
        seeds = TARGETS[name]()
        if not check:
            os.makedirs(corpus, exist_ok=True)
            for old in os.listdir(corpus):
                if old.startswith("seed-") and old[5:] not in seeds:
                    os.remove(os.path.join(corpus, old))
        for seed, data in sorted(seeds.items()):
            path = os.path.join(corpus, "seed-" + seed)
            if check:
                try:
                    with open(path, "rb") as f:
                        if f.read() != data:
                            stale.append(path)
                except OSError:
                    stale.append(path)
            else:
                with open(path, "wb") as f:
                    f.write(data)
        if check and os.path.isdir(corpus):
            for old in os.listdir(corpus):
                if old.startswith("seed-") and old[5:] not in seeds:
                    stale.append(os.path.join(corpus, old))
        if not check:
            print("%s: %d seeds in %s" % (name, len(seeds), corpus))
    if stale:
        print("stale or missing seeds (run tests/fuzz/make_seeds.py):")
        for path in stale:
            print("  tests/fuzz/" + os.path.relpath(path, root))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
