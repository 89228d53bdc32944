"""The GPU worker: the job protocol, the process that owns the GPU, its asyncio client,
and the SongBackend the stations use."""
