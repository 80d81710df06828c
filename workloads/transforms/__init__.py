"""Graph transforms, each a pure function graph -> new graph: tensor, pipeline, data and expert
parallelism (``tensor_parallel``, ``pipeline_parallel``, ``data_parallel``,
``expert_parallel``), the training step (``training``), epilogue fusion (``fuse``), and helpers
to total a graph's ops without expanding repeats (``walk``)."""
