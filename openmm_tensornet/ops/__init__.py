"""Layer 0: the torch custom ops — schemas, build and load of the C++/CUDA library, pure-torch twins, neighbour search.

Nothing here imports the model (``nn``) or OpenMM.
"""
