"""Transformers from Scratch: the course's shared library.

One module per idea, in the order the course teaches them::

    tokens, embeddings      unit 01
    softmax                 unit 02 (and sampling in generation)
    attention               units 03-05 (scores, masks, multi-head)
    positional              unit 06
    blocks                  unit 07 (LayerNorm, MLP, encoder/decoder blocks)
    models                  units 08-10 (BERT, GPT, encoder-decoder)
    generation, params, data, training, viz
    exercises, grading, authoring, cli   (the course machinery)

Later modules import earlier ones instead of repeating them.
"""

__version__ = "0.1.0"
