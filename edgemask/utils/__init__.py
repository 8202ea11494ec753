"""Small helpers shared across the package (file IO, hashing, seeding)."""
