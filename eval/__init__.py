"""Our benchmark items and contexts (items/, contexts/): package data of steerwarm, installed as `steerwarm.evaldata`
and found through `steerwarm.paths.eval_data()`. Reports and study scripts in this folder are not installed."""
