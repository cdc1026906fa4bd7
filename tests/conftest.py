import torch as th

# Tests run tiny networks: one thread avoids thread overhead and leaves the other core free.
th.set_num_threads(1)
