"""Per-tenant rate limits: token buckets in memory, or in Redis across replicas."""
