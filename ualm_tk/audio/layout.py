"""File names of a stage-2 shard directory (shared by the formatter and the merge)."""

PARAMS_FILE = "format_params.json"
# the lists a finished shard holds; wav.scp is written last, so its presence marks a finished shard
SHARD_FILES = ("wav.scp", "utt2num_samples", "master.scp", "rejected")
WAV_SUBDIR = "wav"
