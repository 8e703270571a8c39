"""One-off studies behind the design notes in docs/design/: recipe sweeps, attention kernels, load time,
CUDA placement. Not part of the shipped `bench`/`report`; each module's docstring gives its command."""
