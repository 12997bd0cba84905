"""What a trial measures beside its phase timings: Milvus's S3 requests (traffic, and the portable trace
any store can replay them from, trace), the servers' resource use (resources), each store on its own
(warp), the servers' health while a phase runs (watchdog), and what ran (provenance)."""
