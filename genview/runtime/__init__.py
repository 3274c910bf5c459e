"""The processes of a run, below every stage: one writer per output folder and jobs that end with their Snakemake
(``processes``), progress lines in job logs (``progress``), the torch device (``devices``), torch.distributed helpers
(``distributed``), disjoint GPU leases for concurrent jobs (``gpu_lease``), and ``genview devices``
(``devices_cli``)."""
