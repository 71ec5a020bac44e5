"""PyTorch reference for zhllama's LLaMA parity tests.

Usage: torch_reference.py MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py bench CONFIG.json BATCH SEQ_LEN STEPS THREADS
       torch_reference.py bench-generate CONFIG.json BATCH NEW_TOKENS THREADS
       torch_reference.py train MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py adapter MODEL_DIR ADAPTER_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py heads MODEL_DIR INPUT.json OUTPUT.safetensors
       torch_reference.py bench-dpo CONFIG.json SHAPE.json
       torch_reference.py bench-ppo CONFIG.json SHAPE.json

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


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def run(cfg, w, ids, valid, with_hidden=False):
    """LlamaForCausalLM's logits for ids [B, T], valid marking real tokens
    (and the final normed hidden states with with_hidden)."""
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
        q = (n @ w[p + "self_attn.q_proj.weight"].T).view(B, T, nh, hd).transpose(1, 2)
        k = (n @ w[p + "self_attn.k_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        v = (n @ w[p + "self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        v = v[:, :, None].expand(B, nkv, rep, T, hd).reshape(B, nh, T, hd)
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(hd) + mask, dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, T, nh * hd)
        h = x + att @ w[p + "self_attn.o_proj.weight"].T
        n2 = rms_norm(h, w[p + "post_attention_layernorm.weight"], eps)
        g = n2 @ w[p + "mlp.gate_proj.weight"].T
        u = n2 @ w[p + "mlp.up_proj.weight"].T
        x = h + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
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
                q = (n @ w[p + "self_attn.q_proj.weight"].T).view(b, 1, nh, hd).transpose(1, 2)
                k = (n @ w[p + "self_attn.k_proj.weight"].T).view(b, 1, nkv, hd).transpose(1, 2)
                v = (n @ w[p + "self_attn.v_proj.weight"].T).view(b, 1, nkv, hd).transpose(1, 2)
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
    print(json.dumps({"tokens_per_s": b / times[len(times) // 2], "total_s": sum(times)}))


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


def train():
    """Optimizer steps as transformers' Trainer takes them: per step, the
    micro-batches' summed token losses over the step's token count,
    clip_grad_norm_, the optimizer (weight decay off for no_decay names),
    then the scheduler. Writes "param." + name for the trained tensors."""
    model_dir, inp_path, out_path = sys.argv[2:5]
    cfg = json.load(open(model_dir + "/config.json"))
    w = load(model_dir + "/model.safetensors")
    inp = json.load(open(inp_path))
    lora = inp.get("lora") or []
    for m in lora:  # PEFT's LoRA: W + scale·B·A on a frozen W
        w[m["a"]] = torch.tensor(m["A"], dtype=torch.float32).reshape(m["r"], -1)
        w[m["b"]] = torch.tensor(m["B"], dtype=torch.float32).reshape(-1, m["r"])
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
    sch = torch.optim.lr_scheduler.LambdaLR(opt, schedule(inp["scheduler"], inp["warmup"], inp["total"]))
    for micro in inp["steps"]:
        opt.zero_grad()
        denom = sum(int((torch.tensor(b["labels"])[:, 1:] != -100).sum()) for b in micro)
        for b in micro:
            ids, valid, labels = torch.tensor(b["ids"]), torch.tensor(b["valid"]), torch.tensor(b["labels"])
            logits = run(cfg, weights(), ids, valid)
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                     ignore_index=-100, reduction="sum") / denom
            loss.backward()
        if inp["max_grad_norm"] > 0:
            # clip_grad_norm_'s rule, with the norm summed in float64: torch's
            # float32 reduction over millions of values is off by ~1e-4.
            total = math.sqrt(sum(float(w[n].grad.double().pow(2).sum()) for n in names))
            coef = inp["max_grad_norm"] / (total + 1e-6)
            if coef < 1:
                for n in names:
                    w[n].grad.mul_(coef)
        opt.step()
        sch.step()
    save(out_path, {"param." + n: w[n] for n in names})


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
    float32 model; prints JSON with the median tokens/s and the peak RSS."""
    import resource
    import time

    cfg = json.load(open(sys.argv[2]))
    b, t, steps, threads = (int(x) for x in sys.argv[3:7])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    V = cfg["vocab_size"]
    w = {k: v.requires_grad_(True) for k, v in random_weights(cfg).items()}
    opt = torch.optim.AdamW(list(w.values()), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, V, (b, t))
    valid = torch.ones(b, t, dtype=torch.bool)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        opt.zero_grad()
        logits = run(cfg, w, ids, valid)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    times = sorted(times[1:])
    print(json.dumps({"tokens_per_s": b * t / times[len(times) // 2],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))

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
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        n = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (n @ w[p + "self_attn.q_proj.weight"].T).view(B, T, nh, hd).transpose(1, 2)
        k = (n @ w[p + "self_attn.k_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        v = (n @ w[p + "self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
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
    """Times full-parameter PPO steps as TRL takes them: sample responses
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
        with torch.no_grad():
            cache = ([], [])
            hidden = layers_fast(cfg, w, w["model.embed_tokens.weight"][prompts], 0, cache)
            out = [prompts]
            for pos in range(P, P + N):
                probs = torch.softmax(hidden[:, -1] @ head_of(w).T, -1)
                tok = torch.multinomial(probs, 1)
                out.append(tok)
                if pos + 1 < P + N:
                    hidden = layers_fast(cfg, w, w["model.embed_tokens.weight"][tok], pos, cache)
            seqs = torch.cat(out, 1)
        t1 = time.perf_counter()
        with torch.no_grad():
            h = layers_fast(cfg, rm, rm["model.embed_tokens.weight"][seqs])
            scores = (h[:, -1] @ rw.T + rb).squeeze(-1)
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


if __name__ == "__main__":
    if sys.argv[1] == "bench":
        bench()
    elif sys.argv[1] == "bench-generate":
        bench_generate()
    elif sys.argv[1] == "bench-dpo":
        bench_dpo()
    elif sys.argv[1] == "bench-ppo":
        bench_ppo()
    elif sys.argv[1] == "adapter":
        adapter()
    elif sys.argv[1] == "heads":
        torch.set_num_threads(1)
        heads()
    elif sys.argv[1] == "train":
        torch.set_num_threads(1)
        train()
    else:
        torch.set_num_threads(1)
        main()
