"""Data-parallel training of a torch character model whose RNN and optimizer are elman's:
torch.nn.parallel.DistributedDataParallel over gloo, on CPU processes.

    torchrun --standalone --nproc_per_node=2 examples/torch_ddp.py [--steps 200] [--out P]
    python examples/torch_ddp.py [...]      # one process on the whole batch, to compare

Every process takes its own rows of each global batch (--batch / world size of them); DDP
averages the gradients over the processes during backward, so each process applies the
same elman.torch.Adagrad step and the parameters stay the same everywhere, and equal to
those of one process training on the whole batch (tests/test_torch_dropin.py checks this
in float64). Rank 0 prints the loss and, with --out, saves the final parameters (a
state_dict for torch.load).

Needs torch (a CPU build; pip install "elman[torch]"). torchrun sets OMP_NUM_THREADS=1 for
each process unless it is set already; with P processes on C cores give each C // P.
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

import elman.torch
from elman.data import builtin_text


class CharModel(torch.nn.Module):
    """one-hot characters -> ElmanRNN -> Linear logits."""

    def __init__(self, V, H, layers, dtype):
        super().__init__()
        self.V = V
        self.rnn = elman.torch.ElmanRNN(V, H, num_layers=layers, batch_first=True,
                                        dtype=dtype)
        self.head = torch.nn.Linear(H, V, dtype=dtype)

    def forward(self, ids):
        x = F.one_hot(ids, self.V).to(self.head.weight.dtype)
        return self.head(self.rnn(x)[0])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32, help="global batch (sequences per step)")
    p.add_argument("--seq", type=int, default=64, help="characters per sequence")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--out", help="save the final parameters here (rank 0)")
    args = p.parse_args(argv)

    distributed = "WORLD_SIZE" in os.environ   # started by torchrun
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    if args.batch % world:
        p.error(f"--batch {args.batch} must divide among {world} processes")
    dtype = getattr(torch, args.dtype)

    text = builtin_text(400_000)
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text])
    torch.manual_seed(0)                         # the same start everywhere
    model = CharModel(len(vocab), args.hidden, args.layers, dtype)
    if distributed:  # broadcasts rank 0's parameters; averages gradients in backward
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = elman.torch.Adagrad(model.parameters(), lr=args.lr)

    mine = slice(rank * args.batch // world, (rank + 1) * args.batch // world)
    gen = torch.Generator().manual_seed(1)       # the same batches everywhere
    t0 = time.perf_counter()
    for step in range(args.steps):
        starts = torch.randint(0, len(ids) - args.seq - 1, (args.batch,), generator=gen)
        rows = torch.stack([ids[s:s + args.seq + 1] for s in starts[mine].tolist()])
        logits = model(rows[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, len(vocab)), rows[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.3f} nats/char (rank 0's rows)",
                  flush=True)
    if rank == 0:
        ms = (time.perf_counter() - t0) / args.steps * 1e3
        print(f"{world} process(es): {ms:.1f} ms per step of {args.batch} sequences")
        if args.out:
            plain = model.module if distributed else model
            torch.save(plain.state_dict(), args.out)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
