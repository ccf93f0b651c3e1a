"""Client authentication and tokens: signing keys, the client assertion, DPoP proofs, the token endpoint and cache."""
