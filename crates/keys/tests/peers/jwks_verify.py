"""A JWT verifier that trusts a JWKS fetched over HTTP, done with jwcrypto.

usage: jwks_verify.py JWKS_URL TOKEN
  prints "kids: K1 K2 ..." (each checked to be its key's RFC 7638 thumbprint),
  then "verified SUB" or "refused: REASON" (exit status 0 either way; 2 on
  a thumbprint mismatch).
"""

import json
import sys
import urllib.request

from jwcrypto import jwk, jwt

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=10) as r:
    keyset = jwk.JWKSet.from_json(r.read())
    print("cache-control:", r.headers["Cache-Control"])
kids = []
for key in keyset["keys"]:
    kid = key.get("kid")
    if key.thumbprint() != kid:
        print("kid", kid, "is not the thumbprint", key.thumbprint())
        sys.exit(2)
    kids.append(kid)
print("kids:", " ".join(sorted(kids)))
try:
    token = jwt.JWT(jwt=sys.argv[2], key=keyset, algs=["EdDSA", "ES256"])
    print("verified", json.loads(token.claims)["sub"])
except Exception as e:  # jwcrypto raises several types; the test reads the word
    print("refused:", type(e).__name__, e)
