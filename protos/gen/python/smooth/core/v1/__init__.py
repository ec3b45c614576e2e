"""Generated code of the Smooth Core contract (protos/). Do not edit."""
