"""The Groups API: groups, members, a user's groups, membership writes; many groups' members read concurrently."""
