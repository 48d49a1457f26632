"""Command-line tools, installed as console commands by ``pip install``.

    scnn-train          scnn_jax.cli.train      (also: python train.py)
    scnn-inpaint        scnn_jax.cli.inpaint    (also: python -m scnn_jax.inpaint)
    scnn-fad            scnn_jax.cli.fad        (also: python -m scnn_jax.fad)
    scnn-ablation       scnn_jax.cli.ablation   (also: python -m scnn_jax.ablation)

``common`` is their shared start-up, ``usage`` what they say about
configs, ``serve`` the inpainting web page (``scnn-inpaint --serve``).
``scnn_jax/inpaint.py``, ``fad.py`` and ``ablation.py`` only keep the
``python -m scnn_jax.<name>`` paths. The top of the import graph: nothing in
scnn_jax imports this package.
"""
