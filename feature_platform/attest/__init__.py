"""Signed artifacts: in-toto Statement v1 attestations in DSSE envelopes, signed offline with an ed25519 key,
and the trust policy that says whose signatures promotion accepts."""
