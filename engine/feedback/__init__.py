"""Human feedback as training data: ratings, corrections and preferences exported for SFT and DPO.

- `export`: SFT prompt/completion (or chat `messages`) and DPO prompt/chosen/rejected files,
  rendered through each run's prompt version;
- `options`: what an export keeps (rating bar, corrections, the held-out splits) and where;
- `writing`: the file and its dataset with lineage, registered together.

May import: `errors`, `data`, `prompts` and the store; never `evaluation`, `training` or above.
"""
