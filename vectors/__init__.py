"""Shipped vectors and fine-tune adapters of the default model: package data of steerwarm, installed as
`steerwarm.shipped` and found through `steerwarm.paths.shipped_vectors()`. No code lives here."""
