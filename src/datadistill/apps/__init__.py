"""Applications of synthetic sets (reference §6): neural architecture search (``nas``), continual
learning (``continual``) and one-shot federated learning (``federated``, FedD3). Each answers "does
the synthetic set make this cheaper without changing the conclusion?" with a measured comparison
against the same task on real data, and writes JSON/CSV results and plots to its output folder."""
