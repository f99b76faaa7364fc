"""Study execution: the study folder's manifest, the executors (local, Slurm through submitit),
the node worker that runs several trials under one measurement lock per GPU, and status."""
