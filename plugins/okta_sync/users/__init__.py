"""The Users API: listing with the `after` cursor, pages, partitioned listing, reading and updating one user."""
