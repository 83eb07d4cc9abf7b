"""The bundled recipes: spec files (``tunebridge run digits_mlp``) and scripts, shipped in the wheel.

``tunebridge recipes`` lists them; ``tunebridge recipes --copy DIR`` writes editable copies. Nothing here is
imported by tunebridge itself.
"""
