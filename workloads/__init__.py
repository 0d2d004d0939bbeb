"""SpAtten workloads: the algorithm in PyTorch (:mod:`workloads.spatten`), the models and
texts it runs on, the pruning policies (``policies/``) and the workload CSV schema
(:mod:`workloads.csvschema`, the one row type of a workload). The hardware contract and
the golden model are in :mod:`spatten.contract`.
"""
