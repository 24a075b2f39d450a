"""C++ kernels for Jittor on the CPU, where its generated kernels are the slow part of a training step.

PyTorch runs these as single library calls; Jittor 1.3.11's CPU backend builds them from element-wise pieces
(scripts/step_timing.py --profile shows the cost, docs/performance.md the measurements). Each kernel computes
what the plain Jittor expression beside it in model.py computes, to float32 rounding (tests/NLG_jittor/
test_cpu_kernels.py holds them to it, values and gradients); on CUDA model.py keeps Jittor's own kernels.

- `smoothed_nll(logits, target, eps)`: the label-smoothed cross entropy of each row, (1 - eps) * (lse - x[t])
  + eps * (lse - mean(x)) with lse = log(sum(exp(x))), in two passes over the [N, vocab] logits (max, then the
  exponentials summed in float64) instead of a float64 copy of them; its gradient,
  g * (softmax(x) - (1 - eps) * onehot(t) - eps / vocab), in one pass.
- `log_softmax(x)`: model.log_softmax (the beam search's scores) the same way, float32 out; its gradient
  g - softmax(x) * sum(g) in float64 (the two terms nearly cancel where softmax(x) ~ |g|).
- `beam_top_k(scores, logprobs, k)`: the k best continuations of each example, scores[e, r] + logprobs[e*R + r, j]
  over all (r, j), in one pass without the [E, R * vocab] candidate tensor (gpt2_beam.top_candidates builds it,
  then groups and sorts it: a quarter of a batched decode); ties go to the lower flat index.
- `batched_matmul(a, b, transpose_b)`: a [..., M, K] @ b [..., K, N] (or b^T for b [..., N, K]) as one oneDNN
  sgemm per matrix, where Jittor's CPU backend multiplies 4-D tensors by broadcasting them to [..., M, K, N] and
  reducing (5x slower at 186 tokens); the gradients are the same products. oneDNN is the library Jittor's own
  2-D matmul calls (loaded by Jittor at import; the kernel declares the one function it calls).
- `gelu(x)`: GPT-2's tanh GELU with model.gelu's clamp of the tanh argument, and its gradient, one pass each
  (Jittor's generated backward of the written-out form is ~10 element-wise pieces, cosh among them).
- `masked_softmax(scores, blocked, fill)`: softmax over the last dimension of scores with blocked entries set to
  fill (model.softmax of masked_fill, max shift constant); its gradient p * (g - sum(g * p)), one pass each.
"""
import math

import numpy as np

from jittor_env import jt


def available(*tensors):
    """Whether the kernels run for these tensors: on the CPU, in float32 (autocast and CUDA keep Jittor's own)."""
    return not jt.flags.use_cuda and all(str(t.dtype) == "float32" for t in tensors)


_ROW_SUMS = """
    @alias(x, in0)
    @alias(target, in1)
    @alias(lse, out0)
    @alias(loss, out1)
    const int rows = x_shape0, vocab = x_shape1;
    const double eps = {eps!r};
    #pragma omp parallel for
    for (int i = 0; i < rows; i++) {{
        const float* row = x_p + (size_t)i * vocab;
        float top = row[0];
        for (int j = 1; j < vocab; j++) top = row[j] > top ? row[j] : top;
        double exps = 0.0, total = 0.0;
        for (int j = 0; j < vocab; j++) {{
            exps += (double)expf(row[j] - top);
            total += (double)row[j];
        }}
        const double log_sum = (double)top + log(exps);
        lse_p[i] = log_sum;
        loss_p[i] = (float)((1.0 - eps) * (log_sum - (double)row[target_p[i]]) + eps * (log_sum - total / vocab));
    }}
"""

_ROW_GRADIENT = """
    @alias(x, in0)
    @alias(target, in1)
    @alias(lse, in2)
    @alias(grad, in3)
    @alias(dx, out0)
    const int rows = x_shape0, vocab = x_shape1;
    const float eps = {eps!r}f;
    #pragma omp parallel for
    for (int i = 0; i < rows; i++) {{
        const float* row = x_p + (size_t)i * vocab;
        float* out = dx_p + (size_t)i * vocab;
        const float g = grad_p[i], shift = (float)lse_p[i], smooth = eps / vocab;
        for (int j = 0; j < vocab; j++) out[j] = g * (expf(row[j] - shift) - smooth);
        out[target_p[i]] -= g * (1.0f - eps);
    }}
"""


class SmoothedNLL(jt.Function):
    """Per-row label-smoothed negative log-likelihood of float32 logits [N, vocab] at int targets [N]."""

    def execute(self, logits, target, eps):
        self.saved = (logits, target, float(eps))
        lse, loss = jt.code(shapes=[(logits.shape[0],), (logits.shape[0],)], dtypes=["float64", "float32"],
                            inputs=[logits, target], cpu_src=_ROW_SUMS.format(eps=float(eps)))
        self.lse = lse
        return loss

    def grad(self, grad_loss):
        logits, target, eps = self.saved
        dx = jt.code(logits.shape, "float32", [logits, target, self.lse, grad_loss],
                     cpu_src=_ROW_GRADIENT.format(eps=float(eps)))
        return dx, None, None


def smoothed_nll(logits, target, eps):
    return SmoothedNLL.apply(logits, target.int32(), eps)


_LOG_SOFTMAX = """
    @alias(x, in0)
    @alias(y, out0)
    @alias(lse, out1)
    const int64_t vocab = x_shape{last}, rows = x_shape0 * x_stride0 / vocab;
    #pragma omp parallel for
    for (int64_t i = 0; i < rows; i++) {{
        const float* __restrict__ row = x_p + i * vocab;
        float* __restrict__ out = y_p + i * vocab;
        float top = row[0];
        for (int64_t j = 1; j < vocab; j++) top = row[j] > top ? row[j] : top;
        double exps = 0.0;
        for (int64_t j = 0; j < vocab; j++) exps += (double)expf(row[j] - top);
        const double log_sum = (double)top + log(exps);
        lse_p[i] = log_sum;
        for (int64_t j = 0; j < vocab; j++) out[j] = (float)((double)row[j] - log_sum);
    }}
"""

_LOG_SOFTMAX_GRAD = """
    @alias(x, in0)
    @alias(lse, in1)
    @alias(g, in2)
    @alias(dx, out0)
    const int64_t vocab = x_shape{last}, rows = x_shape0 * x_stride0 / vocab;
    #pragma omp parallel for
    for (int64_t i = 0; i < rows; i++) {{
        const float* __restrict__ row = x_p + i * vocab;
        const float* __restrict__ grad = g_p + i * vocab;
        float* __restrict__ out = dx_p + i * vocab;
        double total = 0.0;
        for (int64_t j = 0; j < vocab; j++) total += (double)grad[j];
        for (int64_t j = 0; j < vocab; j++)  // in float64: g and p * total nearly cancel where p ~ |g|
            out[j] = (float)((double)grad[j] - exp((double)row[j] - lse_p[i]) * total);
    }}
"""


class LogSoftmax(jt.Function):
    """Log-softmax over the last dimension of a float32 tensor."""

    def execute(self, x):
        last = len(x.shape) - 1
        logp, self.lse = jt.code(shapes=[x.shape, x.shape[:-1]], dtypes=["float32", "float64"], inputs=[x],
                                 cpu_src=_LOG_SOFTMAX.format(last=last))
        self.x = x
        return logp

    def grad(self, grad_y):
        last = len(self.x.shape) - 1
        return jt.code(self.x.shape, "float32", [self.x, self.lse, grad_y],
                       cpu_src=_LOG_SOFTMAX_GRAD.format(last=last))


def log_softmax(x):
    return LogSoftmax.apply(x)


_TOP_K = """
    @alias(scores, in0)
    @alias(logp, in1)
    @alias(values, out0)
    @alias(indices, out1)
    const int64_t examples = scores_shape0, rows = scores_shape1, vocab = logp_shape1, k = {k};
    #pragma omp parallel for
    for (int64_t e = 0; e < examples; e++) {{
        float* best = values_p + e * k;
        int32_t* where = indices_p + e * k;
        for (int64_t i = 0; i < k; i++) {{ best[i] = -INFINITY; where[i] = INT32_MAX; }}
        for (int64_t r = 0; r < rows; r++) {{
            const float base = scores_p[e * rows + r];
            const float* __restrict__ row = logp_p + (e * rows + r) * vocab;
            for (int64_t j = 0; j < vocab; j++) {{
                const float value = base + row[j];
                if (!(value > best[k - 1])) continue;  // (ties keep the lower index, seen first)
                int64_t i = k - 1;
                for (; i > 0 && value > best[i - 1]; i--) {{ best[i] = best[i - 1]; where[i] = where[i - 1]; }}
                best[i] = value;
                where[i] = (int32_t)(r * vocab + j);
            }}
        }}
    }}
"""


def beam_top_k(scores, logprobs, k):
    """(values, indices) as numpy [E, k]: the k largest scores[e, r] + logprobs[e * R + r, j] of each example,
    values descending, index r * vocab + j; None when an example has fewer than k finite candidates (then the
    caller's full sort decides, as gpt2_beam.top_candidates does)."""
    values, indices = jt.code(shapes=[(scores.shape[0], k), (scores.shape[0], k)], dtypes=["float32", "int32"],
                              inputs=[scores, logprobs], cpu_header="#include <cmath>\n#include <cstdint>",
                              cpu_src=_TOP_K.format(k=int(k)))
    values, indices = values.numpy(), indices.numpy()
    return (values, indices.astype(np.int64)) if np.isfinite(values[:, -1]).all() else None


_SGEMM_HEADER = """
#include <cstdint>
extern "C" int dnnl_sgemm(char transa, char transb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
"""

_SGEMM = """
    @alias(a, in0)
    @alias(b, in1)
    @alias(c, out0)
    const int64_t M = c_shape{m}, N = c_shape{n}, K = {k}, matrices = c_shape0 * c_stride0 / (M * N);
    for (int64_t i = 0; i < matrices; i++)
        dnnl_sgemm('{ta}', '{tb}', M, N, K, 1.0f, a_p + i * M * K, {lda}, b_p + i * K * N, {ldb}, 0.0f,
                   c_p + i * M * N, N);
"""


def _gemm(a, b, transpose_a, transpose_b):
    """op(a) @ op(b) per matrix of the leading dimensions (equal in a and b), op = transpose where asked."""
    rank = len(a.shape)
    m = a.shape[-1] if transpose_a else a.shape[-2]
    n = b.shape[-2] if transpose_b else b.shape[-1]
    source = _SGEMM.format(m=rank - 2, n=rank - 1, k=f"a_shape{rank - 2 if transpose_a else rank - 1}",
                           ta="T" if transpose_a else "N", tb="T" if transpose_b else "N",
                           lda=f"a_shape{rank - 1}", ldb=f"b_shape{rank - 1}")  # shapes read at run time
    return jt.code((*a.shape[:-2], m, n), "float32", [a, b], cpu_header=_SGEMM_HEADER, cpu_src=source)


class BatchedMatmul(jt.Function):
    """a [..., M, K] @ b [..., K, N] (transpose_b: b [..., N, K], a @ b^T), float32, same leading dimensions."""

    def execute(self, a, b, transpose_b):
        self.saved = (a, b, transpose_b)
        return _gemm(a, b, False, transpose_b)

    def grad(self, grad_c):
        a, b, transpose_b = self.saved
        if transpose_b:  # c = a @ b^T: da = g @ b, db = g^T @ a
            return _gemm(grad_c, b, False, False), _gemm(grad_c, a, True, False), None
        return _gemm(grad_c, b, False, True), _gemm(a, grad_c, True, False), None  # da = g @ b^T, db = a^T @ g


def batched_matmul(a, b, transpose_b=False):
    return BatchedMatmul.apply(a, b, transpose_b)


_GELU = """
    @alias(x, in0)
    @alias(y, out0)
    const int64_t n = x_shape0 * x_stride0;
    for (int64_t i = 0; i < n; i++) {{
        const float v = x_p[i];
        float z = {c}f * (v + 0.044715f * v * v * v);
        z = z < -{limit}f ? -{limit}f : (z > {limit}f ? {limit}f : z);
        y_p[i] = 0.5f * v * (1.0f + tanhf(z));
    }}
"""

_GELU_GRAD = """
    @alias(x, in0)
    @alias(g, in1)
    @alias(dx, out0)
    const int64_t n = x_shape0 * x_stride0;
    for (int64_t i = 0; i < n; i++) {{
        const float v = x_p[i], z = {c}f * (v + 0.044715f * v * v * v);
        const bool clamped = z < -{limit}f || z > {limit}f;
        const float t = tanhf(clamped ? (z < 0.0f ? -{limit}f : {limit}f) : z);
        const float slope = clamped ? 0.0f : (1.0f - t * t) * {c}f * (1.0f + 3.0f * 0.044715f * v * v);
        dx_p[i] = g_p[i] * (0.5f * (1.0f + t) + 0.5f * v * slope);
    }}
"""


class Gelu(jt.Function):
    """GPT-2's GELU (tanh form) of a float32 tensor, the tanh argument clamped to +-limit (model.gelu)."""

    def execute(self, x, limit):
        self.saved = (x, limit)
        return jt.code(x.shape, "float32", [x], cpu_src=_GELU.format(c=GELU_C, limit=limit))

    def grad(self, grad_y):
        x, limit = self.saved
        return jt.code(x.shape, "float32", [x, grad_y], cpu_src=_GELU_GRAD.format(c=GELU_C, limit=limit)), None


GELU_C = repr(float(np.float32(math.sqrt(2.0 / math.pi))))  # the float32 constant model.gelu multiplies by


def gelu(x, limit):
    return Gelu.apply(x, float(limit))


_SOFTMAX = """
    @alias(x, in0)
    @alias(blocked, in1)
    @alias(p, out0)
    const int64_t length = x_shape{last}, rows = x_shape0 * x_stride0 / length;
    const int64_t per_batch = x_stride0 / length, mask_rows = blocked_shape{query};
    const bool batched_mask = blocked_shape0 > 1;
    for (int64_t r = 0; r < rows; r++) {{
        const float* __restrict__ in = x_p + r * length;
        float* __restrict__ out = p_p + r * length;
        const bool* __restrict__ mask = blocked_p + ((batched_mask ? r / per_batch : 0) * mask_rows + r % mask_rows)
                                                    * length;
        for (int64_t j = 0; j < length; j++) out[j] = mask[j] ? {fill}f : in[j];
        float top = out[0];
        for (int64_t j = 1; j < length; j++) top = out[j] > top ? out[j] : top;
        float total = 0.0f;
        for (int64_t j = 0; j < length; j++) {{
            out[j] = expf(out[j] - top);
            total += out[j];
        }}
        for (int64_t j = 0; j < length; j++) out[j] /= total;
    }}
"""

_SOFTMAX_GRAD = """
    @alias(p, in0)
    @alias(g, in1)
    @alias(dx, out0)
    const int64_t length = p_shape{last}, rows = p_shape0 * p_stride0 / length;
    for (int64_t r = 0; r < rows; r++) {{
        const float* __restrict__ prob = p_p + r * length;
        const float* __restrict__ grad = g_p + r * length;
        float* __restrict__ out = dx_p + r * length;
        float dot = 0.0f;
        for (int64_t j = 0; j < length; j++) dot += grad[j] * prob[j];
        for (int64_t j = 0; j < length; j++) out[j] = prob[j] * (grad[j] - dot);
    }}
"""


class MaskedSoftmax(jt.Function):
    """softmax(scores.masked_fill(blocked, fill)) over the last dimension; scores [B, H, T, S] float32, blocked
    [B|1, 1, T, S] bool."""

    def execute(self, scores, blocked, fill):
        last = len(scores.shape) - 1
        self.probs = jt.code(scores.shape, "float32", [scores, blocked],
                             cpu_src=_SOFTMAX.format(last=last, query=last - 1, fill=float(fill)))
        return self.probs

    def grad(self, grad_p):
        last = len(self.probs.shape) - 1
        return jt.code(self.probs.shape, "float32", [self.probs, grad_p],
                       cpu_src=_SOFTMAX_GRAD.format(last=last)), None, None


def masked_softmax(scores, blocked, fill):
    return MaskedSoftmax.apply(scores, blocked, fill)
