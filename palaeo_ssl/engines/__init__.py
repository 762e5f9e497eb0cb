"""Where extraction runs besides one local process.

- :mod:`palaeo_ssl.shards` (``extract_embeddings(..., shard="I/N")``): one task of a
  cluster array job; each task embeds its part of the images into a shared store.
- :mod:`palaeo_ssl.engines.ray_data` (``engine="ray"``): a Ray Data pipeline on a Ray
  cluster, decoding on CPUs and embedding in an actor pool (GPUs when there are any).

Both write the store's chunks (:mod:`palaeo_ssl.store`); the store is consolidated by a
run without ``shard`` (shards) or by the driver (Ray).
"""
