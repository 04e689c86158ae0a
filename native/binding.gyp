{
  "targets": [
    { "target_name": "thinpool_native", "sources": ["thinpool_native.c", "rados_aio.c"] }
  ]
}
