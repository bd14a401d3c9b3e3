"""Counting and looking inside: what a block costs, what it sees, where it looks, how fast it runs.

* :mod:`.complexity`: parameters and FLOPs in named conventions; every cost formula, one ``Cost`` type.
* :mod:`.calculator`: formula against measurement for every block, as a table.
* :mod:`.receptive`: theoretical receptive fields and the maximum path length.
* :mod:`.erf`: effective receptive fields and feature similarity (EMO's Fig. 9).
* :mod:`.cam`: Grad-CAM through pytorch-grad-cam, target layers per model.
* :mod:`.bench`: CPU throughput and memory of the fast and the reference attention paths.
* :mod:`.timing`: interleaved timing on a shared machine, robust summaries.
"""
