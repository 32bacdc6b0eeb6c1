"""Human feedback as training data: ratings, corrections and preferences exported for SFT and DPO.

- `export`: SFT prompt/completion (or chat `messages`) and DPO prompt/chosen/rejected files,
  rendered through each run's prompt version and registered as datasets with their lineage.

May import: `errors`, `data`, `prompts` and the store; never `evaluation`, `training` or above.
"""
