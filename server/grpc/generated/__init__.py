"""Python stubs for protos/*.proto. Regenerate with `make protos`; do not edit.

The messages are registered in POOL, a descriptor pool private to this package,
not in protobuf's default pool: tritonclient registers the same ``inference.*``
names there, and both must load in one process. Code that needs a pool (for
example gRPC server reflection) should be given POOL.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
