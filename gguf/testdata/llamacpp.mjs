// Runs llama.cpp (node-llama-cpp's prebuilt CPU build) and Hugging Face's
// GGUF parser on the jobs in the JSON file argv[2], printing one JSON
// array of results. A job: {model, lora?, meta?, noLoad?, texts?, prompt?,
// top?, greedy?}. It runs beside a node_modules that is (or links to)
// internal/testenv/node's.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {gguf} from "@huggingface/gguf";
import {readFileSync} from "node:fs";

// GGUF's value type numbers, named as @huggingface/gguf's GGUFValueType.
const typeNames = ["UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32", "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"];
const typeName = (v) => v.subType !== undefined ? `${typeNames[v.type]}<${typeNames[v.subType]}>` : typeNames[v.type];
const jobs = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error, maxThreads: 1});
const results = [];
for (const job of jobs) {
  const r = {};
  if (job.meta) {
    const {typedMetadata, tensorInfos} = await gguf(job.model, {allowLocalFile: true, typedMetadata: true});
    r.types = Object.fromEntries(Object.entries(typedMetadata).map(([k, v]) => [k, typeName(v)]));
    r.tensors = tensorInfos.map((t) => ({name: t.name, dtype: t.dtype, shape: t.shape.map(Number)}));
  }
  if (job.noLoad) {
    results.push(r);
    continue;
  }
  const model = await llama.loadModel({modelPath: job.model});
  r.tokens = (job.texts ?? []).map((t) => Array.from(model.tokenize(t, false)));
  if (job.prompt) {
    const lora = job.lora ? {lora: {adapters: [{filePath: job.lora}]}} : {};
    // A float32 KV cache and no flash attention (by default llama.cpp
    // keeps keys and values in F16), so that an F32 file is computed in
    // float32 throughout.
    const ctx = await model.createContext({contextSize: 64, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32", ...lora});
    const seq = ctx.getSequence();
    const p = job.prompt;
    const res = await seq.controlledEvaluate([...p.slice(0, -1),
      [p.at(-1), {generateNext: {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}}}]]);
    // llama.cpp sums the softmax in float32: over a big vocabulary its
    // probabilities add up to 1 ± 2e-4. Renormalized in float64, they are
    // the log-probabilities of its logits.
    const probs = res.at(-1).next.probabilities;
    let sum = 0;
    for (const q of probs.values()) sum += q;
    r.logprobs = [...probs.entries()].slice(0, job.top ?? 20).map(([t, q]) => [t, Math.log(q / sum)]);
    await seq.clearHistory();
    r.greedy = [];
    for await (const t of seq.evaluate(p, {temperature: 0})) {
      r.greedy.push(t);
      if (r.greedy.length >= (job.greedy ?? 8)) break;
    }
    await ctx.dispose();
  }
  await model.dispose();
  results.push(r);
}
console.log(JSON.stringify(results));
await llama.dispose();
