# Reads the RFC 7208 test suite (YAML) and prints it in a line format that
# tests/authcheck_spf.rs reads without a YAML crate (PyYAML is Debian's
# python3-yaml). Every free-form field is hex-encoded (UTF-8).
#
#   S                                          a new scenario
#   R name type value                          one record, in the order pyspf's
#                                              test driver serves them
#   T id helo host mailfrom results explanation   one case ("-": no explanation)
#
# Zone data is translated as pyspf's own driver (test/testspf.py, getrdata)
# does: type SPF records are served as TXT too unless the name has a TXT
# record; "NONE" values are dropped; a bare TIMEOUT entry stays in place.
import sys
import yaml


def h(s):
    return (s if isinstance(s, bytes) else str(s).encode("utf-8")).hex() or "-"


def rdata(entries):
    generated = []
    gen = True
    for m in entries:
        if not isinstance(m, dict):
            yield ("TIMEOUT", "")
            continue
        for t, v in m.items():
            if t == "TXT":
                gen = False
            elif t == "SPF" and gen:
                generated.append(("TXT", v))
            if v == "NONE":
                continue
            yield (t, v)
    if gen:
        for g in generated:
            yield g


def value(t, v):
    if v == "TIMEOUT":
        return "TIMEOUT"
    if t in ("TXT", "SPF"):
        strings = v if isinstance(v, list) else [v]
        return h("".join(strings))
    if t == "MX":
        return "%d:%s" % (v[0], h(v[1]))
    return h(v)


for doc in yaml.safe_load_all(open(sys.argv[1], "rb")):
    print("S")
    for name, entries in doc["zonedata"].items():
        for t, v in rdata(entries):
            print("R\t%s\t%s\t%s" % (h(name.lower()), t, value(t, v) if t != "TIMEOUT" else "-"))
    for tid, case in doc["tests"].items():
        res = case["result"]
        res = ",".join(res) if isinstance(res, list) else res
        exp = case.get("explanation")
        print("T\t%s\t%s\t%s\t%s\t%s\t%s" % (
            h(tid), h(case["helo"]), case["host"], h(case["mailfrom"]), res,
            h(exp) if exp is not None else "-"))
