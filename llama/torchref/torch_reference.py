"""PyTorch reference for zhllama's LLaMA parity tests.

Usage: torch_reference.py MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py bench CONFIG.json BATCH SEQ_LEN STEPS THREADS
       torch_reference.py bench-generate CONFIG.json BATCH NEW_TOKENS THREADS
       torch_reference.py train MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py adapter MODEL_DIR ADAPTER_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py heads MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py bench-dpo CONFIG.json SHAPE.json
       torch_reference.py bench-ppo CONFIG.json SHAPE.json
       torch_reference.py rlhf INPUT.json OUTPUT.json

Reads config.json and model.safetensors (F32, F16 or BF16), runs
LlamaForCausalLM's computation in float32 on the batch in INPUT.json
({"ids", "valid", "labels"}: lists of rows), and writes the logits, the
loss and the gradient of every parameter ("grad." + name) as F32. With
"adamw": {"lr", "weight_decay", "max_grad_norm", "steps"} it then trains
that many steps on the batch (clip_grad_norm_, torch.optim.AdamW) and also
writes the parameters ("param." + name). With "generate": {"prompt",
"max_new_tokens"} it continues the prompt greedily (no cache: the whole
sequence is run for each token) and writes the ids as "generated".
"""
import functools
import json
import math
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[8 + n + b : 8 + n + e])
        out[name] = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).float()
    return out


def save(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().float().contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def linear(w, x, name):
    """x·Wᵀ through weight name of w."""
    return x @ w[name].T


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def run(cfg, w, ids, valid, with_hidden=False, lora=None):
    """LlamaForCausalLM's logits for ids [B, T], valid marking real tokens
    (and the final normed hidden states with with_hidden). lora maps a
    projection's weight name to (A, B, scale), added as PEFT's LoRA layer
    computes it: x·Wᵀ + scale·(x·Aᵀ)·Bᵀ."""
    def lin(x, name):
        y = linear(w, x, name)
        if lora and name in lora:
            a, b, scale = lora[name]
            y = y + scale * ((x @ a.T) @ b.T)
        return y

    B, T = ids.shape
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    base = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    allowed = causal[None, :, :] & valid[:, None, :].bool()  # [B, Tq, Tk]
    mask = torch.zeros(B, 1, T, T).masked_fill(~allowed[:, None], float("-inf"))
    x = w["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        n = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(n, p + "self_attn.q_proj.weight").view(B, T, nh, hd).transpose(1, 2)
        k = lin(n, p + "self_attn.k_proj.weight").view(B, T, nkv, hd).transpose(1, 2)
        v = lin(n, p + "self_attn.v_proj.weight").view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        v = v[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(hd) + mask, dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, T, nh * hd)
        h = x + lin(att, p + "self_attn.o_proj.weight")
        n2 = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(n2, p + "mlp.gate_proj.weight")
        u = lin(n2, p + "mlp.up_proj.weight")
        x = h + lin(torch.nn.functional.silu(g) * u, p + "mlp.down_proj.weight")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]
    if with_hidden:
        return x @ head.T, x
    return x @ head.T


def main():
    model_dir, inp_path, out_path = sys.argv[1:4]
    cfg = json.load(open(model_dir + "/config.json"))
    w = {k: v.clone().requires_grad_(True) for k, v in load(model_dir + "/model.safetensors").items()}
    inp = json.load(open(inp_path))
    ids = torch.tensor(inp["ids"])
    valid = torch.tensor(inp["valid"])
    labels = torch.tensor(inp["labels"])

    def forward():
        logits = run(cfg, w, ids, valid)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        return logits, loss

    logits, loss = forward()
    loss.backward()
    out = {"logits": logits, "loss": loss.reshape(1)}
    for k, v in w.items():
        out["grad." + k] = v.grad.clone()
    if "generate" in inp:
        seq = list(inp["generate"]["prompt"])
        with torch.no_grad():
            for _ in range(inp["generate"]["max_new_tokens"]):
                x = torch.tensor([seq])
                logits = run(cfg, w, x, torch.ones_like(x, dtype=torch.bool))
                seq.append(int(logits[0, -1].argmax()))
        out["generated"] = torch.tensor(seq[len(inp["generate"]["prompt"]):], dtype=torch.float32)
    if "adamw" in inp:
        cfg_opt = inp["adamw"]
        params = list(w.values())
        opt = torch.optim.AdamW(params, lr=cfg_opt["lr"], weight_decay=cfg_opt["weight_decay"])
        for step in range(cfg_opt["steps"]):
            if step > 0:
                opt.zero_grad()
                _, loss = forward()
                loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg_opt["max_grad_norm"])
            opt.step()
        for k, v in w.items():
            out["param." + k] = v
    save(out_path, out)


def heads():
    """The heads over the trunk: per-token log-probabilities of the next
    label (0 where it is -100 and at the end) and a value head's values
    (nn.Linear(hidden, 1), TRL's v_head.summary), with the gradients of
    sum(dlogp * logp) + sum(dvalue * values) for every parameter."""
    model_dir, inp_path, out_path = sys.argv[2:5]
    cfg = json.load(open(model_dir + "/config.json"))
    w = {k: v.clone().requires_grad_(True) for k, v in load(model_dir + "/model.safetensors").items()}
    inp = json.load(open(inp_path))
    ids, valid, labels = torch.tensor(inp["ids"]), torch.tensor(inp["valid"]), torch.tensor(inp["labels"])
    vw = torch.tensor(inp["v_head_weight"]).reshape(1, -1).requires_grad_(True)
    vb = torch.tensor(inp["v_head_bias"]).reshape(1).requires_grad_(True)
    logits, hidden = run(cfg, w, ids, valid, with_hidden=True)
    target = labels[:, 1:]
    keep = target != -100
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, target.clamp(min=0)[..., None]).squeeze(-1) * keep
    logp = torch.cat([logp, torch.zeros(logp.shape[0], 1)], dim=1)
    values = torch.nn.functional.linear(hidden, vw, vb).squeeze(-1)
    loss = (logp * torch.tensor(inp["dlogp"])).sum() + (values * torch.tensor(inp["dvalue"])).sum()
    loss.backward()
    out = {"logp": logp, "values": values, "grad.v_head.summary.weight": vw.grad, "grad.v_head.summary.bias": vb.grad}
    for k, v in w.items():
        out["grad." + k] = v.grad.clone()
    save(out_path, out)


def random_weights(cfg):
    """A random float32 model of cfg's shapes, as a name -> tensor dict."""
    H, V, I = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    shapes = {"model.embed_tokens.weight": (V, H), "model.norm.weight": (H,)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "self_attn.q_proj.weight": (nh * hd, H), p + "self_attn.k_proj.weight": (nkv * hd, H),
                       p + "self_attn.v_proj.weight": (nkv * hd, H), p + "self_attn.o_proj.weight": (H, nh * hd),
                       p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H),
                       p + "mlp.down_proj.weight": (H, I), p + "input_layernorm.weight": (H,),
                       p + "post_attention_layernorm.weight": (H,)})
    if not cfg.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (V, H)
    return {k: torch.randn(s) * 0.02 for k, s in shapes.items()}


def bench_generate():
    """Times greedy decoding with a KV cache (the prompt is one token per
    sequence); prints JSON with tokens/s from the median step."""
    import time

    cfg = json.load(open(sys.argv[2]))
    b, new, threads = (int(x) for x in sys.argv[3:6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    w = random_weights(cfg)
    H, nh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
    emb = torch.cat((torch.outer(torch.arange(new + 1).float(), inv_freq),) * 2, dim=-1)
    cos, sin = emb.cos(), emb.sin()
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    lin = functools.partial(linear, w)
    kc = [torch.zeros(b, nkv, new + 1, hd) for _ in range(L)]
    vc = [torch.zeros(b, nkv, new + 1, hd) for _ in range(L)]
    tok = torch.ones(b, dtype=torch.long)
    times = []
    with torch.no_grad():
        for pos in range(new):
            start = time.perf_counter()
            x = w["model.embed_tokens.weight"][tok].view(b, 1, H)
            for l in range(L):
                p = f"model.layers.{l}."
                n = rms_norm(x, w[p + "input_layernorm.weight"], eps)
                q = lin(n, p + "self_attn.q_proj.weight").view(b, 1, nh, hd).transpose(1, 2)
                k = lin(n, p + "self_attn.k_proj.weight").view(b, 1, nkv, hd).transpose(1, 2)
                v = lin(n, p + "self_attn.v_proj.weight").view(b, 1, nkv, hd).transpose(1, 2)
                q = q * cos[pos] + rotate_half(q) * sin[pos]
                k = k * cos[pos] + rotate_half(k) * sin[pos]
                kc[l][:, :, pos : pos + 1] = k
                vc[l][:, :, pos : pos + 1] = v
                rep = nh // nkv
                keys = kc[l][:, :, None, : pos + 1].expand(b, nkv, rep, pos + 1, hd).reshape(b, nh, pos + 1, hd)
                vals = vc[l][:, :, None, : pos + 1].expand(b, nkv, rep, pos + 1, hd).reshape(b, nh, pos + 1, hd)
                att = torch.softmax(q @ keys.transpose(2, 3) / math.sqrt(hd), dim=-1) @ vals
                h = x + att.transpose(1, 2).reshape(b, 1, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
                n2 = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
                g = n2 @ w[p + "mlp.gate_proj.weight"].T
                u = n2 @ w[p + "mlp.up_proj.weight"].T
                x = h + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
            logits = rms_norm(x, w["model.norm.weight"], eps) @ head.T
            tok = logits[:, -1].argmax(-1)
            times.append(time.perf_counter() - start)
    times = sorted(times)
    print(json.dumps({"tokens_per_s": b / times[len(times) // 2], "total_s": sum(times), "blas": blas()}))


def schedule(kind, warmup, total):
    """transformers' learning-rate multipliers by optimizer step."""
    def f(step):
        if step < warmup and kind != "constant":
            return step / max(1, warmup)
        if kind == "linear":
            return max(0.0, (total - step) / max(1, total - warmup))
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        return 1.0
    return f


def pref_losses(kind, beta, eps, gamma, pc, pr, rc, rr):
    """Per-pair preference losses and rewards from the policy's (pc, pr)
    and the reference's (rc, rr; unused by orpo and simpo) sequence
    log-probabilities: TRL's dpo_loss for sigmoid (label smoothing eps),
    hinge and ipo, LF's orpo and simpo."""
    logsig = torch.nn.functional.logsigmoid
    if kind in ("sigmoid", "hinge", "ipo"):
        x = (pc - pr) - (rc - rr)
        if kind == "sigmoid":
            losses = -(1 - eps) * logsig(beta * x) - eps * logsig(-beta * x)
        elif kind == "hinge":
            losses = torch.relu(1 - beta * x)
        else:
            losses = (x - 1 / (2 * beta)) ** 2
        return losses, beta * (pc - rc), beta * (pr - rr)
    if kind == "orpo":
        log_odds = (pc - pr) - (torch.log1p(-torch.exp(pc)) - torch.log1p(-torch.exp(pr)))
        return -pc - beta * logsig(log_odds), beta * pc, beta * pr
    if kind == "simpo":
        return -logsig(beta * ((pc - pr) - gamma / beta)), beta * pc, beta * pr
    raise ValueError("unknown pref_loss " + kind)


def sequence_logps(logits, labels, averaged):
    """LF's get_batch_logps: each row's summed log-probability of its
    labels (not -100) given the previous tokens, in float64 from the
    float32 logits, or the per-token average; and the label counts."""
    target = labels[:, 1:]
    keep = target != -100
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, target.clamp(min=0)[..., None]).squeeze(-1)
    seq = (logp.double() * keep).sum(-1)
    length = keep.sum(-1)
    return (seq / length if averaged else seq), length


def train():
    """Optimizer steps as transformers' Trainer takes them: per step, the
    micro-batches' summed losses over the step's weight, clip_grad_norm_,
    the optimizer (weight decay off for no_decay names), then the
    scheduler. Writes "param." + name for the trained tensors.

    "objective" picks the loss: "lm" (the default; cross-entropy summed
    over the learned tokens, the weight is the step's token count), "rm"
    (LF's reward model: a value head "v_head": {"weight", "bias"}, trained
    with the model, scores each row at its last real token; rows 0..n-1
    chosen, n..2n-1 rejected; -logsigmoid(chosen - rejected) summed over
    the pairs, the weight is the step's pair count), "dpo" (the
    preference loss "pref": {"loss", "beta", "label_smoothing",
    "simpo_gamma", "ftx"} on LF's sequence log-probabilities, the reference
    being the starting weights without LoRA: a frozen copy, or the base
    with the adapters off), "kto" (TRL's KTO loss, "kto": {"beta",
    "chosen_weight", "rejected_weight", "ftx"}, each micro-batch being the
    answer rows with their "kl" rows and "desirable" flags; the batch's
    mean loss times its size, the weight is the step's example count) or
    "ppo" (one PPO step on fixed rollouts, "ppo": see ppo_step; it writes
    the experience too). "start" maps names to the values the trained
    weights start from instead of the model's (the reference keeps the
    model's)."""
    model_dir, inp_path, out_path = sys.argv[2:5]
    cfg = json.load(open(model_dir + "/config.json"))
    w = load(model_dir + "/model.safetensors")
    ref_w = {k: v.clone() for k, v in w.items()}  # the reference of dpo: the starting weights, no adapters
    inp = json.load(open(inp_path))
    for n, v in (inp.get("start") or {}).items():  # a policy that starts away from its reference
        w[n] = torch.tensor(v, dtype=torch.float32).reshape(w[n].shape)
    objective = inp.get("objective", "lm")
    lora = inp.get("lora") or []
    for m in lora:  # PEFT's LoRA: W + scale·B·A on a frozen W
        w[m["a"]] = torch.tensor(m["A"], dtype=torch.float32).reshape(m["r"], -1)
        w[m["b"]] = torch.tensor(m["B"], dtype=torch.float32).reshape(-1, m["r"])
    if "v_head" in inp:
        w["v_head.summary.weight"] = torch.tensor(inp["v_head"]["weight"], dtype=torch.float32).reshape(1, -1)
        w["v_head.summary.bias"] = torch.tensor(inp["v_head"]["bias"], dtype=torch.float32).reshape(1)
    names = inp.get("trainable") or list(w)
    for n in names:
        w[n].requires_grad_(True)

    def weights():
        if not lora:
            return w
        eff = dict(w)
        for m in lora:
            eff[m["weight"]] = w[m["weight"]] + m["scale"] * (w[m["b"]] @ w[m["a"]])
        return eff
    decay = [w[n] for n in names if n not in inp["no_decay"]]
    no_decay = [w[n] for n in names if n in inp["no_decay"]]
    groups = [{"params": decay, "weight_decay": inp["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if inp["optim"] == "sgd":
        opt = torch.optim.SGD(groups, lr=inp["lr"])
    else:
        opt = torch.optim.AdamW(groups, lr=inp["lr"], betas=tuple(inp["betas"]), eps=inp["eps"])
    if objective == "ppo":
        out = ppo_step(cfg, w, ref_w, weights, opt, names, inp)
        out.update({"param." + n: w[n] for n in names})
        save(out_path, out)
        return
    sch = torch.optim.lr_scheduler.LambdaLR(opt, schedule(inp["scheduler"], inp["warmup"], inp["total"]))
    def loss_sum(b):
        """The micro-batch's summed loss."""
        ids, valid, labels = torch.tensor(b["ids"]), torch.tensor(b["valid"]), torch.tensor(b["labels"])
        if objective == "lm":
            logits = run(cfg, weights(), ids, valid)
            return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                     ignore_index=-100, reduction="sum")
        n = ids.shape[0] // 2
        if objective == "rm":
            _, hidden = run(cfg, weights(), ids, valid, with_hidden=True)
            values = torch.nn.functional.linear(hidden, w["v_head.summary.weight"], w["v_head.summary.bias"]).squeeze(-1)
            scores = values.gather(1, (valid.long().sum(-1) - 1)[:, None]).squeeze(1)
            return -torch.nn.functional.logsigmoid(scores[:n] - scores[n:]).sum()
        if objective == "kto":
            return kto_loss_sum(cfg, weights(), ref_w, inp["kto"], ids, valid, labels, b)
        p = inp["pref"]
        averaged = p["loss"] in ("ipo", "orpo", "simpo")
        seq, length = sequence_logps(run(cfg, weights(), ids, valid), labels, averaged)
        rc = rr = None
        if p["loss"] not in ("orpo", "simpo"):
            with torch.no_grad():
                ref, _ = sequence_logps(run(cfg, ref_w, ids, valid), labels, averaged)
            rc, rr = ref[:n], ref[n:]
        losses, _, _ = pref_losses(p["loss"], p["beta"], p["label_smoothing"], p["simpo_gamma"], seq[:n], seq[n:], rc, rr)
        if p["ftx"] > 1e-6:
            losses = losses + p["ftx"] * -(seq[:n] if averaged else seq[:n] / length[:n])
        return losses.sum()

    for micro in inp["steps"]:
        opt.zero_grad()
        if objective == "lm":
            denom = sum(int((torch.tensor(b["labels"])[:, 1:] != -100).sum()) for b in micro)
        elif objective == "kto":
            denom = sum(len(b["ids"]) for b in micro)
        else:
            denom = sum(len(b["ids"]) // 2 for b in micro)
        for b in micro:
            loss = loss_sum(b) / denom
            loss.backward()
        clip_grads([w[n] for n in names], inp["max_grad_norm"])
        opt.step()
        sch.step()
    save(out_path, {"param." + n: w[n] for n in names})


def clip_grads(params, max_norm):
    """clip_grad_norm_'s rule, with the norm summed in float64: torch's
    float32 reduction over millions of values is off by ~1e-4. A tensor the
    loss does not reach (the lm_head of a reward model) has no gradient:
    clipping and the optimizer skip it."""
    if max_norm <= 0:
        return
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for g in grads:
            g.mul_(coef)


def kto_loss_sum(cfg, w, ref_w, k, ids, valid, labels, b):
    """LF's KTO loss on a micro-batch, times its size: TRL's kto_loss
    (the reference point KL = clamp>=0(mean(pi_KL - ref_KL)) from the KL
    rows b["kl"], without gradient; desirable 1 - sigmoid(beta(logr - KL)),
    undesirable 1 - sigmoid(beta(KL - logr)), weighted, nanmean), plus
    ftx * nanmean(-pi_c/len_c) / n_chosen * n when the batch has desirable
    answers. Sequence log-probabilities are LF's sums over the answers."""
    d = torch.tensor(b["desirable"], dtype=torch.bool)
    kb = b["kl"]
    kids, kvalid, klabels = torch.tensor(kb["ids"]), torch.tensor(kb["valid"]), torch.tensor(kb["labels"])
    seq, length = sequence_logps(run(cfg, w, ids, valid), labels, False)
    with torch.no_grad():
        p_kl, _ = sequence_logps(run(cfg, w, kids, kvalid), klabels, False)
        ref, _ = sequence_logps(run(cfg, ref_w, ids, valid), labels, False)
        r_kl, _ = sequence_logps(run(cfg, ref_w, kids, kvalid), klabels, False)
    kl = (p_kl - r_kl).mean().clamp(min=0)
    logr = seq - ref
    lc = 1 - torch.sigmoid(k["beta"] * (logr[d] - kl))
    lr = 1 - torch.sigmoid(k["beta"] * (kl - logr[~d]))
    loss = torch.cat((k["chosen_weight"] * lc, k["rejected_weight"] * lr)).nanmean()
    n_chosen = int(d.sum())
    if k["ftx"] > 1e-6 and n_chosen > 0:
        loss = loss + k["ftx"] * (-(seq[d] / length[d])).nanmean() / n_chosen * len(d)
    return loss * len(d)


def ppo_step(cfg, w, ref_w, weights, opt, names, inp):
    """One PPOTrainer.step of TRL 0.9.6 (shared/specs/rlhf.md §3.3) on fixed
    rollouts, "ppo": {"sequences" (query + response ids), "query_lens",
    "scores", "pad", "mini_batch_size", "gradient_accumulation_steps",
    "orders" (per PPO epoch, the permutation of the rollouts), "kl_coef",
    "kl_penalty", "gamma", "lam", "whiten_rewards", "cliprange",
    "cliprange_value", "vf_coef", "ratio_threshold"}. The rollouts are
    right-padded to the longest query + response; the policy is the trunk
    (weights()) with the value head "v_head.summary" on the final norm's
    output at every position, the reference ref_w. Old log-probabilities,
    values and the reference's log-probabilities come mini-batch by
    mini-batch without gradients; per-token rewards -kl_coef * penalty
    (kl, abs, mse, or full: the KL of the whole next-token distributions)
    with the score on the last response token; GAE over the padded
    [B, L-1] layout (optional reward whitening), advantages whitened. Then
    per epoch, per group of gradient_accumulation_steps mini-batches of
    the order: each mini-batch's clipped loss / GA backward (0 where the
    mean ratio passes ratio_threshold), clipping, one optimizer step at the
    given lr (the schedule moves once per PPO step). Returns the
    experience as "exp." + name tensors of shape [B, L-1]."""
    p = inp["ppo"]
    F = torch.nn.functional
    seqs, qlens = p["sequences"], p["query_lens"]
    B, L = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((B, L), p["pad"], dtype=torch.long)
    valid = torch.zeros(B, L, dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        valid[i, : len(s)] = True
    mask = response_mask(qlens, [len(s) - q for s, q in zip(seqs, qlens)])
    full = p["kl_penalty"] == "full"

    def forward(wts, idx, head):
        idx = torch.tensor(idx)
        x = ids[idx]
        logits, hidden = run(cfg, wts, x, valid[idx], with_hidden=True)
        logits = logits[:, :-1]
        logp = torch.log_softmax(logits, -1).gather(2, x[:, 1:, None]).squeeze(-1)
        values = None
        if head:
            values = F.linear(hidden, w["v_head.summary.weight"], w["v_head.summary.bias"]).squeeze(-1)[:, :-1]
        return logp, values, logits

    mb, ga = p["mini_batch_size"], p["gradient_accumulation_steps"]
    old, values, ref, full_kl = [], [], [], []
    with torch.no_grad():
        for lo in range(0, B, mb):
            idx = list(range(lo, min(lo + mb, B)))
            lp, v, lg = forward(weights(), idx, True)
            rlp, _, rlg = forward(ref_w, idx, False)
            old.append(lp)
            values.append(v)
            ref.append(rlp)
            if full:
                lp_all, rlp_all = torch.log_softmax(lg.double(), -1), torch.log_softmax(rlg.double(), -1)
                full_kl.append(F.kl_div(rlp_all, lp_all, log_target=True, reduction="none").sum(-1))
    old, values, ref = (torch.cat(x).double() for x in (old, values, ref))
    d = old - ref
    kl = torch.cat(full_kl) if full else {"kl": d, "abs": d.abs(), "mse": 0.5 * d.square()}[p["kl_penalty"]]
    rewards = -p["kl_coef"] * kl
    for i in range(B):
        rewards[i, int(mask[i].nonzero()[-1])] += p["scores"][i]
    values = values * mask
    r = rewards * mask
    if p["whiten_rewards"]:
        r = masked_whiten(r, mask, shift_mean=False)
    gamma, lam, T = p["gamma"], p["lam"], mask.shape[1]
    last, rev = 0.0, []
    for t in reversed(range(T)):
        nxt = values[:, t + 1] if t < T - 1 else 0.0
        last = r[:, t] + gamma * nxt - values[:, t] + gamma * lam * last
        rev.append(last)
    adv = torch.stack(rev[::-1], dim=1)
    returns = adv + values
    adv = masked_whiten(adv, mask)

    params = [w[n] for n in names]
    for order in p["orders"]:
        for lo in range(0, B, mb * ga):
            opt.zero_grad()
            for k in range(ga):
                idx = order[lo + k * mb : lo + (k + 1) * mb]
                lp, vpred, _ = forward(weights(), idx, True)
                out = clipped_ppo_loss(mask[idx], old[idx], values[idx], lp.double(), vpred.double(), adv[idx], returns[idx],
                                       p["cliprange"], p["cliprange_value"], p["vf_coef"], p["ratio_threshold"])
                (out["loss"] / ga).backward()
            clip_grads(params, inp["max_grad_norm"])
            opt.step()
    return {"exp.mask": mask, "exp.logprobs": old, "exp.ref_logprobs": ref, "exp.kl": kl, "exp.values": values,
            "exp.advantages": adv, "exp.returns": returns}


def adapter():
    """Applies a PEFT LoRA adapter directory as PEFT reads it (keys
    base_model.model.<module>.lora_A/B.weight, scaling lora_alpha/r or
    lora_alpha/sqrt(r) with use_rslora, other keys replacing whole tensors)
    and writes the logits of INPUT.json's ids."""
    model_dir, adapter_dir, inp_path, out_path = sys.argv[2:6]
    cfg = json.load(open(model_dir + "/config.json"))
    w = load(model_dir + "/model.safetensors")
    acfg = json.load(open(adapter_dir + "/adapter_config.json"))
    r = acfg["r"]
    scaling = acfg["lora_alpha"] / (math.sqrt(r) if acfg.get("use_rslora") else r)
    ad = load(adapter_dir + "/adapter_model.safetensors")
    prefix = "base_model.model."
    for k, v in ad.items():
        if k.endswith(".lora_A.weight"):
            module = k[len(prefix):-len(".lora_A.weight")]
            w[module + ".weight"] = w[module + ".weight"] + scaling * (ad[prefix + module + ".lora_B.weight"] @ v)
        elif not k.endswith(".lora_B.weight"):
            w[k[len(prefix):]] = v
    ids = torch.tensor(json.load(open(inp_path))["ids"])
    with torch.no_grad():
        logits = run(cfg, w, ids, torch.ones_like(ids, dtype=torch.bool))
    save(out_path, {"logits": logits})


def bench():
    """Times training steps (forward, backward, clipping, AdamW) of a random
    float32 model; prints JSON with the median tokens/s and the peak RSS.
    With a rank (an optional last argument above 0) only LoRA adapters on
    every projection train, the base frozen, as PEFT runs them."""
    import resource
    import time

    cfg = json.load(open(sys.argv[2]))
    b, t, steps, threads = (int(x) for x in sys.argv[3:7])
    rank = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    V = cfg["vocab_size"]
    w = random_weights(cfg)
    lora = None
    if rank:  # A small random, B zero: PEFT's initialisation; scale lora_alpha/r with alpha 2
        lora = {k: ((torch.randn(rank, v.shape[1]) * 0.01).requires_grad_(True),
                    torch.zeros(v.shape[0], rank, requires_grad=True), 2.0 / rank)
                for k, v in w.items() if k.endswith("_proj.weight")}
        params = [x for a, bb, _ in lora.values() for x in (a, bb)]
    else:
        params = [v.requires_grad_(True) for v in w.values()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, V, (b, t))
    valid = torch.ones(b, t, dtype=torch.bool)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        logits = run(cfg, w, ids, valid, lora=lora)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    print(json.dumps({"tokens_per_s": b * t / times[len(times) // 2],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "blas": blas(),
                      "trainable": sum(p.numel() for p in params)}))

def bench_gemm():
    """Times torch.mm as x · wᵀ (x M×K, w N×K) for each shape M×N×K in argv
    and prints each shape's samples, seconds a multiply (after a
    warm-up)."""
    import time
    torch.set_num_threads(int(sys.argv[2]))
    runs = int(sys.argv[3])
    out = {}
    for shape in sys.argv[4:]:
        m, n, k = map(int, shape.split("x"))
        x, w = torch.randn(m, k), torch.randn(n, k)
        # Sampled as zhllama's side samples (gemmSamples): 0.1 s of
        # warm-up, then samples of about 50 ms each.
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < 0.1:
            x @ w.T
            calls += 1
        reps = max(1, int(0.05 * calls / (time.perf_counter() - start)))
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            for _ in range(reps):
                x @ w.T
            ts.append((time.perf_counter() - t) / reps)
        out[shape] = ts
    print(json.dumps({"seconds": out, "blas": blas()}))


def blas():
    """The BLAS library this process multiplies through, from its mappings."""
    for line in open("/proc/self/maps"):
        path = line.split()[-1]
        if "blas" in path.lower() and ".so" in path:
            return path
    return "?"


def attend(q, k, v, causal):
    """Causal attention: PyTorch's fused kernel (SDPA) where this torch has
    it (2.0 and later), else softmax(q·kᵀ/√d + mask)·v."""
    F = torch.nn.functional
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    s = q @ k.transpose(2, 3) / math.sqrt(q.shape[-1])
    if causal:
        tq, tk = s.shape[-2], s.shape[-1]
        s = s.masked_fill(torch.ones(tq, tk, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def layers_fast(cfg, w, x, pos0=0, cache=None):
    """The decoder layers with PyTorch's fastest eager attention; with cache
    (lists of K and V per layer) the new positions attend to the cached ones
    too."""
    B, T, H = x.shape
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    eps = cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.outer(torch.arange(pos0, pos0 + T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    F = torch.nn.functional
    lin = functools.partial(linear, w)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        n = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(n, p + "self_attn.q_proj.weight").view(B, T, nh, hd).transpose(1, 2)
        k = lin(n, p + "self_attn.k_proj.weight").view(B, T, nkv, hd).transpose(1, 2)
        v = lin(n, p + "self_attn.v_proj.weight").view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if pos0 > 0:
                k = torch.cat((cache[0][l], k), dim=2)
                v = torch.cat((cache[1][l], v), dim=2)
            if len(cache[0]) <= l:
                cache[0].append(k)
                cache[1].append(v)
            else:
                cache[0][l], cache[1][l] = k, v
        rep = nh // nkv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        att = attend(q, k, v, T > 1)
        h = x + att.transpose(1, 2).reshape(B, T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        n2 = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        x = h + (F.silu(n2 @ w[p + "mlp.gate_proj.weight"].T) * (n2 @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    return rms_norm(x, w["model.norm.weight"], eps)


def head_of(w):
    return w["lm_head.weight"] if "lm_head.weight" in w else w["model.embed_tokens.weight"]


def token_logps(cfg, w, ids, hidden=None):
    """log π(ids[t+1] | ids[..t]) for every t, and the final hidden states."""
    if hidden is None:
        hidden = layers_fast(cfg, w, w["model.embed_tokens.weight"][ids])
    logits = hidden[:, :-1] @ head_of(w).T
    return torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1), hidden


def bench_result(times, extra):
    import resource
    times = sorted(times[1:])
    out = {"step_s": times[len(times) // 2], "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "blas": blas()}
    out.update(extra)
    print(json.dumps(out))


def bench_dpo():
    """Times full-parameter DPO steps (sigmoid loss): a reference pass
    without gradients and a policy pass over [chosen; rejected], the loss on
    the answers' summed log-probabilities, backward, clipping, AdamW."""
    import time
    cfg, shape = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    torch.set_num_threads(shape["threads"])
    torch.manual_seed(0)
    b, t, prompt = shape["batch"], shape["seq_len"], shape["prompt_len"]
    w = {k: v.requires_grad_(True) for k, v in random_weights(cfg).items()}
    ref = {k: v.detach().clone() for k, v in w.items()}
    opt = torch.optim.AdamW(list(w.values()), lr=1e-6, weight_decay=0.0)
    ids = torch.randint(0, cfg["vocab_size"], (2 * b, t))
    answer = torch.zeros(2 * b, t - 1)
    answer[:, prompt - 1:] = 1
    times = []
    for _ in range(shape["steps"] + 1):
        start = time.perf_counter()
        opt.zero_grad()
        with torch.no_grad():
            r = (token_logps(cfg, ref, ids)[0] * answer).sum(-1)
        p = (token_logps(cfg, w, ids)[0] * answer).sum(-1)
        x = (p[:b] - p[b:]) - (r[:b] - r[b:])
        loss = -torch.nn.functional.logsigmoid(0.1 * x).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    bench_result(times, {})


def bench_ppo():
    """Times full-parameter PPO steps as TRL takes them: sample responses mini-batch by mini-batch
    with a KV cache, score them with a separate reward model (value head at
    the last token), the policy's old log-probabilities and values and the
    reference's log-probabilities without gradients, KL-penalised rewards,
    GAE and whitening, then ppo_epochs passes of clipped updates in
    mini-batches (backward, clipping, AdamW). Prints the median step time and
    its split."""
    import time
    cfg, shape = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
    torch.set_num_threads(shape["threads"])
    torch.manual_seed(0)
    B, P, N, mb = shape["batch"], shape["prompt_len"], shape["new_tokens"], shape["mini_batch"]
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    w = {k: v.requires_grad_(True) for k, v in random_weights(cfg).items()}
    vw = (torch.randn(1, H) * 0.02).requires_grad_(True)
    vb = torch.zeros(1).requires_grad_(True)
    ref = {k: v.detach().clone() for k, v in w.items()}
    rm = random_weights(cfg)
    rw, rb = torch.randn(1, H) * 0.02, torch.zeros(1)
    params = list(w.values()) + [vw, vb]
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.0)
    prompts = torch.randint(0, V, (B, P))
    split = {"generate": [], "score": [], "train": []}
    times = []
    for _ in range(shape["steps"] + 1):
        start = time.perf_counter()
        # LLaMA-Factory generates and scores mini-batch by mini-batch.
        with torch.no_grad():
            minis = []
            for lo in range(0, B, mb):
                cache = ([], [])
                hidden = layers_fast(cfg, w, w["model.embed_tokens.weight"][prompts[lo:lo + mb]], 0, cache)
                out = [prompts[lo:lo + mb]]
                for pos in range(P, P + N):
                    probs = torch.softmax(hidden[:, -1] @ head_of(w).T, -1)
                    tok = torch.multinomial(probs, 1)
                    out.append(tok)
                    if pos + 1 < P + N:
                        hidden = layers_fast(cfg, w, w["model.embed_tokens.weight"][tok], pos, cache)
                minis.append(torch.cat(out, 1))
            seqs = torch.cat(minis, 0)
        t1 = time.perf_counter()
        with torch.no_grad():
            scores = torch.cat([(layers_fast(cfg, rm, rm["model.embed_tokens.weight"][q])[:, -1] @ rw.T + rb).squeeze(-1) for q in minis])
        t2 = time.perf_counter()
        mask = torch.zeros(B, P + N - 1)
        mask[:, P - 1:] = 1
        with torch.no_grad():
            old, hid = token_logps(cfg, w, seqs)
            values = (hid[:, :-1] @ vw.T + vb).squeeze(-1)
            refl, _ = token_logps(cfg, ref, seqs)
            rewards = -0.2 * (old - refl)
            rewards[:, -1] += scores
            vals, rew = values * mask, rewards * mask
            adv = torch.zeros_like(rew)
            last = torch.zeros(B)
            for t in reversed(range(P + N - 1)):
                nxt = vals[:, t + 1] if t + 1 < P + N - 1 else torch.zeros(B)
                last = rew[:, t] + nxt - vals[:, t] + 0.95 * last
                adv[:, t] = last
            ret = adv + vals
            mean = (adv * mask).sum() / mask.sum()
            var = (((adv - mean) ** 2) * mask).sum() / mask.sum() * mask.sum() / (mask.sum() - 1)
            adv = (adv - mean) * torch.rsqrt(var + 1e-8)
        for epoch in range(shape["ppo_epochs"]):
            perm = torch.randperm(B)
            for lo in range(0, B, mb):
                idx = perm[lo:lo + mb]
                opt.zero_grad()
                lp, hid = token_logps(cfg, w, seqs[idx])
                vp = (hid[:, :-1] @ vw.T + vb).squeeze(-1)
                m = mask[idx]
                ratio = torch.exp(lp - old[idx])
                pg = torch.max(-adv[idx] * ratio, -adv[idx] * ratio.clamp(0.8, 1.2))
                vc = torch.clamp(vp, values[idx] - 0.2, values[idx] + 0.2)
                vf = 0.5 * torch.max((vp - ret[idx]) ** 2, (vc - ret[idx]) ** 2)
                loss = (pg * m).sum() / m.sum() + 0.1 * (vf * m).sum() / m.sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
        end = time.perf_counter()
        split["generate"].append(t1 - start)
        split["score"].append(t2 - t1)
        split["train"].append(end - t2)
        times.append(end - start)
    med = lambda xs: sorted(xs[1:])[len(xs[1:]) // 2]
    bench_result(times, {"generate_s": med(split["generate"]), "score_s": med(split["score"]), "train_s": med(split["train"])})


# ---------------------------------------------------------------------------
# rlhf: the losses of learning from preferences as TRL 0.9.6 and
# LLaMA-Factory compute them (shared/specs/rlhf.md §2.2, §3.3, §3.4,
# §4.1–4.7), in float64 with autograd for the gradients. INPUT.json is
# {"cases": [{"kind": ..., ...}]}; OUTPUT.json is {"results": [...]} in the
# same order, numbers as JSON floats ("inf", "-inf", "nan" as strings).


def f64(x):
    return torch.tensor(x, dtype=torch.float64)


def jsonable(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().tolist()
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def masked_mean(x, m):
    return (x * m).sum() / m.sum()


def masked_var(x, m):
    """The Bessel-corrected variance of x where m is 1."""
    mu = masked_mean(x, m)
    v = masked_mean((x - mu) ** 2, m)
    n = m.sum()
    if n == 0:
        raise ValueError("empty mask")
    return v * (n / (n - 1))


def masked_whiten(x, m, shift_mean=True):
    mu = masked_mean(x, m)
    out = (x - mu) * torch.rsqrt(masked_var(x, m) + 1e-8)
    return out if shift_mean else out + mu


def rlhf_rank(c):
    """LF's reward-model loss: each row's value at its last real token
    (attention_mask.sum() - 1), rows 0..n-1 chosen and n..2n-1 rejected,
    mean -logsigmoid(chosen - rejected); the gradient over all values."""
    values = f64(c["values"]).requires_grad_(True)
    attn = torch.tensor(c["attention_mask"], dtype=torch.long)
    n = values.shape[0] // 2
    scores = values.gather(1, (attn.sum(-1) - 1)[:, None]).squeeze(1)
    sc, sr = scores[:n], scores[n:]
    loss = -torch.nn.functional.logsigmoid(sc - sr).mean()
    loss.backward()
    return {"loss": loss, "chosen": sc, "rejected": sr, "accuracy": (sc > sr).double().mean(), "grad_values": values.grad}


def rlhf_pref(c):
    """TRL's dpo_loss (sigmoid with label smoothing, hinge, ipo) and LF's
    orpo and simpo on sequence log-probabilities built as LF's
    get_batch_logps builds them from per-token log-probabilities (summed
    over the answer's tokens, averaged for ipo/orpo/simpo), plus pref_ftx
    times the chosen answers' per-token NLL. Gradients: of the preference
    part w.r.t. the sequence log-probabilities, of the ftx part w.r.t.
    chosen_logps_avg, and of the whole loss w.r.t. the per-token values."""
    kind, beta, eps, gamma, ftx = c["loss"], c["beta"], c["label_smoothing"], c["simpo_gamma"], c["ftx"]
    tok = f64(c["logp"]).requires_grad_(True)
    ref_tok = f64(c["ref_logp"])
    mask = f64(c["mask"])
    n = tok.shape[0] // 2
    length = mask.sum(-1)
    seq, ref_seq = (tok * mask).sum(-1), (ref_tok * mask).sum(-1)
    averaged = kind in ("ipo", "orpo", "simpo")
    if averaged:
        seq, ref_seq = seq / length, ref_seq / length
    pc, pr = seq[:n], seq[n:]
    rc, rr = ref_seq[:n], ref_seq[n:]
    chosen_avg = pc if averaged else pc / length[:n]
    losses, rew_c, rew_r = pref_losses(kind, beta, eps, gamma, pc, pr, rc, rr)
    pref = losses.mean()
    sft = ftx * -chosen_avg if ftx > 1e-6 else torch.zeros_like(losses)
    loss = (losses + sft).mean()
    d_pc, d_pr = torch.autograd.grad(pref, [pc, pr], retain_graph=True)
    out = {"pc": pc, "pr": pr, "rc": rc, "rr": rr, "chosen_avg": chosen_avg, "length": length,
           "pref_loss": pref, "loss": loss, "losses": losses, "d_pc": d_pc, "d_pr": d_pr}
    if ftx > 1e-6:
        (out["d_avg"],) = torch.autograd.grad(sft.mean(), [chosen_avg], retain_graph=True)
    loss.backward()
    out["grad_logp"] = tok.grad
    rew_c, rew_r = rew_c.detach(), rew_r.detach()
    out["rewards_chosen"], out["rewards_rejected"] = rew_c, rew_r
    out["metrics"] = {"rewards/chosen": rew_c.mean(), "rewards/rejected": rew_r.mean(),
                      "rewards/accuracies": (rew_c > rew_r).double().mean(), "rewards/margins": (rew_c - rew_r).mean(),
                      "logps/chosen": pc.mean(), "logps/rejected": pr.mean()}
    return out


def rlhf_kto(c):
    """TRL's kto_loss: the reference point KL = clamp>=0(mean(pi_KL - ref_KL))
    without gradient; desirable 1 - sigmoid(beta(logr - KL)), undesirable
    1 - sigmoid(beta(KL - logr)), weighted, nanmean over all examples."""
    beta, wc, wr = c["beta"], c["chosen_weight"], c["rejected_weight"]
    pc, pr = f64(c["pc"]).requires_grad_(True), f64(c["pr"]).requires_grad_(True)
    rc, rr = f64(c["rc"]), f64(c["rr"])
    kl = (f64(c["p_kl"]) - f64(c["r_kl"])).mean().clamp(min=0)
    logr_c, logr_r = pc - rc, pr - rr
    lc = 1 - torch.sigmoid(beta * (logr_c - kl))
    lr = 1 - torch.sigmoid(beta * (kl - logr_r))
    loss = torch.cat((wc * lc, wr * lr)).nanmean()
    loss.backward()
    out = {"loss": loss, "kl": kl, "d_pc": pc.grad if pc.grad is not None else torch.zeros(0),
           "d_pr": pr.grad if pr.grad is not None else torch.zeros(0), "metrics": {"kl": kl}}
    if len(pc):
        out["metrics"].update({"rewards/chosen": (beta * logr_c).mean(), "logps/chosen": pc.mean()})
    if len(pr):
        out["metrics"].update({"rewards/rejected": (beta * logr_r).mean(), "logps/rejected": pr.mean()})
    return out


def response_mask(query_lens, response_lens):
    """TRL's mask over [B, L-1] log-prob positions of right-padded
    query+response rows: 1 from len(q)-1 for len(r) positions."""
    T = max(q + r for q, r in zip(query_lens, response_lens)) - 1
    m = torch.zeros(len(query_lens), T, dtype=torch.float64)
    for i, (q, r) in enumerate(zip(query_lens, response_lens)):
        m[i, q - 1 : q - 1 + r] = 1
    return m


def rlhf_gae(c):
    """TRL's compute_rewards (kl, abs, mse or full penalty, the score on the
    last response token) and compute_advantages (GAE over all positions of
    the padded batch with masked rewards and values, optional reward
    whitening, then advantage whitening)."""
    mask = response_mask(c["query_lens"], c["response_lens"])
    B, T = mask.shape
    kind, coef = c["kl_penalty"], c["kl_coef"]
    if kind == "full":
        lp = torch.log_softmax(f64(c["logits"]), dim=-1)
        rlp = torch.log_softmax(f64(c["ref_logits"]), dim=-1)
        kl = torch.nn.functional.kl_div(rlp, lp, log_target=True, reduction="none").sum(-1)
    else:
        d = f64(c["logprobs"]) - f64(c["ref_logprobs"])
        kl = {"kl": d, "abs": d.abs(), "mse": 0.5 * d.square()}[kind]
    rewards = -coef * kl
    for i in range(B):
        rewards[i, int(mask[i].nonzero()[-1])] += c["scores"][i]
    values = f64(c["values"]) * mask
    r = rewards * mask
    if c["whiten_rewards"]:
        r = masked_whiten(r, mask, shift_mean=False)
    gamma, lam = c["gamma"], c["lam"]
    last, rev = 0.0, []
    for t in reversed(range(T)):
        nxt = values[:, t + 1] if t < T - 1 else 0.0
        last = r[:, t] + gamma * nxt - values[:, t] + gamma * lam * last
        rev.append(last)
    adv = torch.stack(rev[::-1], dim=1)
    returns = adv + values
    kl_sum = (kl * mask).sum(-1)
    return {"mask": mask, "kl": kl, "rewards": rewards, "kl_sum": kl_sum, "objective_kl": kl_sum.mean(),
            "advantages": masked_whiten(adv, mask), "returns": returns, "values": values}


def rlhf_whiten(c):
    x, m = f64(c["x"]), f64(c["mask"])
    return {"whitened": masked_whiten(x, m, c["shift_mean"])}


def clipped_ppo_loss(m, old_lp, old_v, lp, vpred, adv, ret, cr, cv, vf_coef, ratio_threshold):
    """TRL's PPOTrainer.loss over a padded mini-batch (mask m): the terms,
    zeroed when the mean ratio passes ratio_threshold, and TRL's stats."""
    vclip = torch.max(torch.min(vpred, old_v + cv), old_v - cv)
    vf1, vf2 = (vpred - ret) ** 2, (vclip - ret) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf1, vf2), m)
    ratio = torch.exp(lp - old_lp)
    pg1, pg2 = -adv * ratio, -adv * torch.clamp(ratio, 1 - cr, 1 + cr)
    pg_loss = masked_mean(torch.max(pg1, pg2), m)
    loss = pg_loss + vf_coef * vf_loss
    avg_ratio = masked_mean(ratio, m)
    skipped = bool(avg_ratio > ratio_threshold)
    if skipped:
        pg_loss, vf_loss, loss = pg_loss * 0.0, vf_loss * 0.0, loss * 0.0
    return {"pg_loss": pg_loss, "vf_loss": vf_loss, "loss": loss, "skipped": skipped,
            "pg_clipfrac": masked_mean((pg2 > pg1).double(), m), "vf_clipfrac": masked_mean((vf2 > vf1).double(), m),
            "approxkl": 0.5 * masked_mean((lp - old_lp) ** 2, m), "policykl": masked_mean(old_lp - lp, m),
            "ratio": avg_ratio, "advantages_mean": masked_mean(adv, m)}


def rlhf_ppo_loss(c):
    """TRL's PPOTrainer.loss over a padded mini-batch, with the gradients of
    the total w.r.t. the new log-probs and value predictions."""
    lp, vpred = f64(c["logprobs"]).requires_grad_(True), f64(c["vpreds"]).requires_grad_(True)
    out = clipped_ppo_loss(f64(c["mask"]), f64(c["old_logprobs"]), f64(c["old_values"]), lp, vpred, f64(c["advantages"]),
                           f64(c["returns"]), c["cliprange"], c["cliprange_value"], c["vf_coef"], c["ratio_threshold"])
    out["loss"].backward()
    out.update({"grad_logprobs": lp.grad, "grad_vpreds": vpred.grad})
    return out


def rlhf_kl_ctl(c):
    """TRL's AdaptiveKLController (or the fixed one) after each update."""
    value, out = c["init"], []
    for kl, n in c["updates"]:
        if c["adaptive"]:
            err = min(max(kl / c["target"] - 1, -0.2), 0.2)
            value *= 1 + err * n / c["horizon"]
        out.append(value)
    return {"values": out}


def rlhf_moments(c):
    """TRL's RunningMoments on float32 scores (one process), and the
    scores normalised by the statistics that include them (use_score_norm
    with use_score_scaling)."""
    mean, var, std, count = 0, 1, 1, 1e-24
    steps = []
    for xs in c["batches"]:
        xs = torch.tensor(xs, dtype=torch.float32)
        n = xs.numel()
        bv, bm = torch.var_mean(xs, unbiased=False)
        bm, bv = bm.float(), bv.float()
        delta = bm - mean
        total = count + n
        tot_sum = var * count + delta ** 2 * count * n / total + bv * n
        mean = mean + delta * n / total
        var = tot_sum / total
        std = (var * total / (total - 1)).float().sqrt()
        count = total
        norm = (xs - mean.to(torch.float32)) / (std.to(torch.float32) + torch.finfo(torch.float32).eps)
        steps.append({"mean": float(mean), "var": float(var), "std": float(std), "count": count, "normalised": norm})
    return {"steps": steps}


RLHF_CASES = {"rank": rlhf_rank, "pref": rlhf_pref, "kto": rlhf_kto, "gae": rlhf_gae, "whiten": rlhf_whiten,
              "ppo_loss": rlhf_ppo_loss, "kl_ctl": rlhf_kl_ctl, "moments": rlhf_moments}


def rlhf():
    inp_path, out_path = sys.argv[2:4]
    cases = json.load(open(inp_path))["cases"]
    results = [jsonable(RLHF_CASES[c["kind"]](c)) for c in cases]
    with open(out_path, "w") as f:
        json.dump({"results": results}, f)


if __name__ == "__main__":
    if sys.argv[1] == "bench":
        bench()
    elif sys.argv[1] == "bench-generate":
        bench_generate()
    elif sys.argv[1] == "bench-gemm":
        bench_gemm()
    elif sys.argv[1] == "bench-dpo":
        bench_dpo()
    elif sys.argv[1] == "bench-ppo":
        bench_ppo()
    elif sys.argv[1] == "adapter":
        adapter()
    elif sys.argv[1] == "rlhf":
        torch.set_num_threads(1)
        rlhf()
    elif sys.argv[1] == "heads":
        torch.set_num_threads(1)
        heads()
    elif sys.argv[1] == "train":
        torch.set_num_threads(1)
        train()
    else:
        torch.set_num_threads(1)
        main()
