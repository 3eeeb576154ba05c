"""An Oblivious HTTP client's key handling, done with pyhpke (not our code).

Fetches an `application/ohttp-keys` document (RFC 9458 §3.2) over HTTP,
parses its key configs (§3.1), and seals a message to one of them as an
encapsulated request (§4.3): hdr || enc || ct, with
info = "message/bhttp request" || 0x00 || hdr.

usage: ohttp_client.py fetch URL
         prints one line per config: "id kem kdf aead pk_hex", then
         "content-type: ..." and "cache-control: ..."
       ohttp_client.py seal CONFIG_HEX MESSAGE
         prints the encapsulated request in hex
"""

import sys
import urllib.request

from pyhpke import AEADId, CipherSuite, KDFId, KEMId

NPK = {0x0020: 32, 0x0010: 65, 0x0011: 97}


def parse_configs(body):
    configs = []
    i = 0
    while i < len(body):
        n = int.from_bytes(body[i : i + 2], "big")
        c = body[i + 2 : i + 2 + n]
        if len(c) != n:
            raise SystemExit("truncated key config")
        i += 2 + n
        key_id = c[0]
        kem = int.from_bytes(c[1:3], "big")
        npk = NPK[kem]
        pk = c[3 : 3 + npk]
        slen = int.from_bytes(c[3 + npk : 5 + npk], "big")
        algs = c[5 + npk : 5 + npk + slen]
        if slen % 4 != 0 or len(algs) != slen or 5 + npk + slen != n:
            raise SystemExit("bad symmetric algorithms")
        for j in range(0, slen, 4):
            kdf = int.from_bytes(algs[j : j + 2], "big")
            aead = int.from_bytes(algs[j + 2 : j + 4], "big")
            configs.append((key_id, kem, kdf, aead, pk))
    return configs


def main():
    if sys.argv[1] == "fetch":
        # No proxy or CA bundle from the environment: this is loopback HTTP.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(sys.argv[2], timeout=10) as r:
            body = r.read()
            for key_id, kem, kdf, aead, pk in parse_configs(body):
                print(key_id, kem, kdf, aead, pk.hex())
            print("content-type:", r.headers["Content-Type"])
            print("cache-control:", r.headers["Cache-Control"])
    elif sys.argv[1] == "seal":
        key_id, kem, kdf, aead, pk = sys.argv[2].split(",")
        key_id, kem, kdf, aead = int(key_id), int(kem), int(kdf), int(aead)
        suite = CipherSuite.new(KEMId(kem), KDFId(kdf), AEADId(aead))
        pkr = suite.kem.deserialize_public_key(bytes.fromhex(pk))
        hdr = bytes([key_id]) + kem.to_bytes(2, "big") + kdf.to_bytes(2, "big") + aead.to_bytes(2, "big")
        info = b"message/bhttp request\x00" + hdr
        enc, sender = suite.create_sender_context(pkr, info=info)
        ct = sender.seal(sys.argv[3].encode())
        print((hdr + enc + ct).hex())
    else:
        raise SystemExit("usage: ohttp_client.py fetch URL | seal CONFIG MESSAGE")


main()
