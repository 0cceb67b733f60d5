#!/usr/bin/env python3
"""Verifies an AI Hub audit export offline (issue 12), with nothing but Python 3.

    python3 verify_export.py EXPORT.jsonl|EXPORT.csv [--public-key HEX]

Each event must carry its chain link, and its hash must be SHA-256(prev || SHA-256(canonical
envelope without "chain")), canonical being JSON with sorted keys and no whitespace. Consecutive
events (seq n, n+1) must link; seqs must rise. Each audit.checkpoint must name the hash the export
holds at the seq it signs, and with --public-key (GET /api/v1/audit/public-key) its Ed25519
signature must verify (needs the `cryptography` package). A filtered export skips events: each
one still proves its own hash, and every run of consecutive ones their links.
Exits 0 when the export verifies, 1 naming the first event that does not.
"""
import csv
import hashlib
import json
import sys


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def envelopes(path):
    with open(path, encoding="utf-8", newline="") as f:
        if path.endswith(".csv"):
            csv.field_size_limit(sys.maxsize)
            for row in csv.DictReader(f):
                yield json.loads(row["envelope"])
        else:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def signature_holds(public_key, checkpoint):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
    message = "aihub-audit-checkpoint/v1\n{}\n{}\n{}".format(
        checkpoint["chain"], checkpoint["seq"], checkpoint["hash"]).encode()
    try:
        key.verify(bytes.fromhex(checkpoint["signature"]), message)
        return True
    except Exception:
        return False


def verify(path, public_key=None):
    hashes, last_seq, last_hash, events, checkpoints = {}, None, None, 0, 0
    for envelope in envelopes(path):
        event_id = envelope.get("event_id")
        link = envelope.get("chain")
        if not link:
            return False, event_id, "no chain link"
        body = {k: v for k, v in envelope.items() if k != "chain"}
        content = hashlib.sha256(canonical(body)).digest()
        computed = hashlib.sha256(bytes.fromhex(link["prev"]) + content).hexdigest()
        if computed != link["hash"]:
            return False, event_id, "its content does not match its hash: altered"
        seq = link["seq"]
        if last_seq is not None and seq <= last_seq:
            return False, event_id, "seq {} after {}: reordered".format(seq, last_seq)
        if last_seq is not None and seq == last_seq + 1 and link["prev"] != last_hash:
            return False, event_id, "its prev is not the hash of the event before it"
        if envelope.get("event_type") == "audit.checkpoint":
            data = envelope.get("data", {})
            signed = hashes.get(data.get("seq"))
            if signed is not None and signed != data.get("hash"):
                return False, event_id, "the checkpoint signs another hash than the export holds"
            if public_key and not signature_holds(public_key, data):
                return False, event_id, "the checkpoint's signature does not verify"
            checkpoints += 1
        hashes[seq] = link["hash"]
        last_seq, last_hash = seq, link["hash"]
        events += 1
    return True, None, "{} events, {} checkpoints verified".format(events, checkpoints)


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--public-key"):
        print(__doc__, file=sys.stderr)
        return 2
    ok, event_id, detail = verify(argv[1], argv[3] if len(argv) == 4 else None)
    if ok:
        print("ok: " + detail)
        return 0
    print("broken at event {}: {}".format(event_id, detail))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
