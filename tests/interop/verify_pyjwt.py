"""Verifies a Prolong access token with PyJWT, an independent JWT library, through the JWKS.

Usage: verify_pyjwt.py ISSUER AUDIENCE TOKEN — prints the claims (plus the header's alg) as JSON,
exits non-zero when verification fails.
"""
import json
import sys
import urllib.request

import jwt  # PyJWT

issuer, audience, token = sys.argv[1], sys.argv[2], sys.argv[3]
with urllib.request.urlopen(issuer + "/.well-known/oauth-authorization-server") as r:
    metadata = json.load(r)
assert metadata["issuer"] == issuer, metadata
jwks_client = jwt.PyJWKClient(metadata["jwks_uri"])
signing_key = jwks_client.get_signing_key_from_jwt(token)
header = jwt.get_unverified_header(token)
assert header["typ"] == "at+jwt", header
claims = jwt.decode(
    token,
    signing_key.key,
    algorithms=[signing_key.algorithm_name if hasattr(signing_key, "algorithm_name") else header["alg"]],
    audience=audience,
    issuer=issuer,
    options={"require": ["exp", "iat", "iss", "aud", "sub"]},
)
claims["alg"] = header["alg"]
print(json.dumps(claims))
