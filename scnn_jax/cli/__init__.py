"""Command-line tools, installed as console commands by ``pip install``.

    scnn-train          scnn_jax.cli.train      (also: python train.py)
    scnn-inpaint        scnn_jax.inpaint        (also: python -m scnn_jax.inpaint)
    scnn-fad            scnn_jax.cli.fad        (also: python -m scnn_jax.fad)
    scnn-ablation       scnn_jax.ablation       (also: python -m scnn_jax.ablation)

The top of the import graph: nothing in scnn_jax imports this package.
"""
