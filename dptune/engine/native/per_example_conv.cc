// Per-example Conv2D kernel gradients on the CPU, for dptune's layerwise DP-SGD path
// (dptune/engine/native_ops.py builds and loads this file; dptune/engine/layer_taps.py uses it).
//
//   grads[p, a, b, c, f] = sum_{oh, ow} padded[p, oh*sh + a*dh, ow*sw + b*dw, c] * out_grad[p, oh, ow, f]
//   squared_norms[p] = sum_{a, b, c, f} grads[p, a, b, c, f]^2
//
// for every example p: the gradient of example p's loss with respect to a Conv2D kernel
// [kh, kw, Ci, Co] and its squared L2 norm, given the layer's input, its zero padding before
// the first row and column (the rest of the window is padded with zeros as needed), and the
// gradient of the loss with respect to the layer's pre-activation output. No image patches are materialized: for each block
// of 8 kernel columns and 16 output channels, 8 vector accumulators stay in registers while the
// output positions stream past, so the cost is the P*Ho*Wo*kh*kw*Ci*Co multiply-adds and little
// memory traffic. TensorFlow's own ops need either patches (P*Ho*Wo*kh*kw*Ci floats) or a
// depthwise filter gradient with the examples as channels, both several times slower.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

namespace dptune {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;

constexpr int kTaps = 8;       // kernel columns per register block
constexpr int kChannels = 16;  // output channels per register block: one vector
typedef float Vec __attribute__((vector_size(kChannels * sizeof(float))));

struct Geometry {
  const float* x;  // one example's padded input [H, W, Ci] (H, W: the padded size)
  const float* d;  // its output gradient [Ho, Wo, Co]
  int64_t W, Ci, Ho, Wo, Co;
  int64_t sh, sw, dh, dw;
};

// out[t * tap_stride + f] for t < NT kernel columns b0 + t of kernel row a, input channel c and
// the 16 output channels from f0.
// Each block returns the sum of the squares it wrote.
template <int NT>
float VectorBlock(const Geometry& g, int64_t a, int64_t b0, int64_t c, int64_t f0, float* out, int64_t tap_stride) {
  Vec acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = Vec{};
  const int64_t tap_step = g.dw * g.Ci;
  for (int64_t oh = 0; oh < g.Ho; ++oh) {
    const float* xrow = g.x + (oh * g.sh + a * g.dh) * g.W * g.Ci + c;
    const float* drow = g.d + oh * g.Wo * g.Co + f0;
    for (int64_t ow = 0; ow < g.Wo; ++ow) {
      Vec dv;
      std::memcpy(&dv, drow + ow * g.Co, sizeof(Vec));
      const float* xv = xrow + (ow * g.sw + b0 * g.dw) * g.Ci;
#pragma GCC unroll 8
      for (int t = 0; t < NT; ++t) acc[t] += xv[t * tap_step] * dv;
    }
  }
  Vec squares{};
  for (int t = 0; t < NT; ++t) {
    std::memcpy(out + t * tap_stride, &acc[t], sizeof(Vec));
    squares += acc[t] * acc[t];
  }
  float total = 0.f;
  for (int f = 0; f < kChannels; ++f) total += squares[f];
  return total;
}

// The same for nf < 16 output channels (the last block when Co is not a multiple of 16).
float ScalarBlock(const Geometry& g, int64_t a, int64_t b0, int64_t nt, int64_t c, int64_t f0, int64_t nf, float* out,
                  int64_t tap_stride) {
  float total = 0.f;
  for (int64_t t = 0; t < nt; ++t) {
    for (int64_t f = 0; f < nf; ++f) {
      float acc = 0.f;
      for (int64_t oh = 0; oh < g.Ho; ++oh)
        for (int64_t ow = 0; ow < g.Wo; ++ow)
          acc += g.x[((oh * g.sh + a * g.dh) * g.W + ow * g.sw + (b0 + t) * g.dw) * g.Ci + c] *
                 g.d[(oh * g.Wo + ow) * g.Co + f0 + f];
      out[t * tap_stride + f] = acc;
      total += acc * acc;
    }
  }
  return total;
}

float Block(const Geometry& g, int64_t a, int64_t b0, int64_t nt, int64_t c, int64_t f0, int64_t nf, float* out,
           int64_t tap_stride) {
  if (nf != kChannels) return ScalarBlock(g, a, b0, nt, c, f0, nf, out, tap_stride);
  switch (nt) {
    case 8: return VectorBlock<8>(g, a, b0, c, f0, out, tap_stride);
    case 7: return VectorBlock<7>(g, a, b0, c, f0, out, tap_stride);
    case 6: return VectorBlock<6>(g, a, b0, c, f0, out, tap_stride);
    case 5: return VectorBlock<5>(g, a, b0, c, f0, out, tap_stride);
    case 4: return VectorBlock<4>(g, a, b0, c, f0, out, tap_stride);
    case 3: return VectorBlock<3>(g, a, b0, c, f0, out, tap_stride);
    case 2: return VectorBlock<2>(g, a, b0, c, f0, out, tap_stride);
    default: return VectorBlock<1>(g, a, b0, c, f0, out, tap_stride);
  }
}

class PerExampleConv2DKernelGradOp : public OpKernel {
 public:
  explicit PerExampleConv2DKernelGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("kernel_size", &kernel_size_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strides", &strides_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dilations", &dilations_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding_));
    OP_REQUIRES(ctx, kernel_size_.size() == 2 && strides_.size() == 2 && dilations_.size() == 2 && padding_.size() == 2,
                absl::InvalidArgumentError("kernel_size, strides, dilations and padding need 2 values each"));
    for (int i = 0; i < 2; ++i)
      OP_REQUIRES(ctx, kernel_size_[i] > 0 && strides_[i] > 0 && dilations_[i] > 0 && padding_[i] >= 0,
                  absl::InvalidArgumentError("kernel_size, strides and dilations must be positive, padding >= 0"));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& out_grad = ctx->input(1);
    OP_REQUIRES(ctx, input.dims() == 4 && out_grad.dims() == 4,
                absl::InvalidArgumentError("input and out_grad must be [P, H, W, C]"));
    const int64_t P = input.dim_size(0), H = input.dim_size(1), W = input.dim_size(2), Ci = input.dim_size(3);
    const int64_t Ho = out_grad.dim_size(1), Wo = out_grad.dim_size(2), Co = out_grad.dim_size(3);
    const int64_t kh = kernel_size_[0], kw = kernel_size_[1];
    const int64_t sh = strides_[0], sw = strides_[1], dh = dilations_[0], dw = dilations_[1];
    OP_REQUIRES(ctx, out_grad.dim_size(0) == P, absl::InvalidArgumentError("input and out_grad differ in examples"));
    const int64_t top = padding_[0], left = padding_[1];
    // the padded image: the padding before, the input, and zeros after as far as the windows reach
    const int64_t Hp = std::max(top + H, Ho == 0 ? 0 : (Ho - 1) * sh + (kh - 1) * dh + 1);
    const int64_t Wp = std::max(left + W, Wo == 0 ? 0 : (Wo - 1) * sw + (kw - 1) * dw + 1);
    Tensor* output = nullptr;
    Tensor* norms = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({P, kh, kw, Ci, Co}), &output));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({P}), &norms));
    const float* x = input.flat<float>().data();
    const float* d = out_grad.flat<float>().data();
    float* out = output->flat<float>().data();
    float* squared = norms->flat<float>().data();
    const int64_t per_example = kh * kw * Ci * Co;
    const bool pads = Hp != H || Wp != W;
    auto examples = [&](int64_t begin, int64_t end) {
      std::vector<float> padded(pads ? Hp * Wp * Ci : 0, 0.f);
      for (int64_t p = begin; p < end; ++p) {
        const float* image = x + p * H * W * Ci;
        if (pads) {
          for (int64_t h = 0; h < H; ++h)
            std::memcpy(padded.data() + ((top + h) * Wp + left) * Ci, image + h * W * Ci, W * Ci * sizeof(float));
          image = padded.data();
        }
        const Geometry g{image, d + p * Ho * Wo * Co, Wp, Ci, Ho, Wo, Co, sh, sw, dh, dw};
        float* o = out + p * per_example;
        float total = 0.f;
        for (int64_t a = 0; a < kh; ++a)
          for (int64_t c = 0; c < Ci; ++c)
            for (int64_t b0 = 0; b0 < kw; b0 += kTaps)
              for (int64_t f0 = 0; f0 < Co; f0 += kChannels)
                total += Block(g, a, b0, std::min<int64_t>(kTaps, kw - b0), c, f0, std::min<int64_t>(kChannels, Co - f0),
                               o + ((a * kw + b0) * Ci + c) * Co + f0, Ci * Co);
        squared[p] = total;
      }
    };
    const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads->num_threads, threads->workers, P, std::max<int64_t>(1, Ho * Wo * per_example), examples);
  }

 private:
  std::vector<int32_t> kernel_size_, strides_, dilations_, padding_;
};

}  // namespace
}  // namespace dptune

REGISTER_OP("DptunePerExampleConv2DKernelGrad")
    .Input("input: float")     // [P, H, W, Ci]
    .Input("out_grad: float")  // [P, Ho, Wo, Co]
    .Attr("kernel_size: list(int)")
    .Attr("strides: list(int)")
    .Attr("dilations: list(int)")
    .Attr("padding: list(int)")     // zero rows before the first, zero columns before the first
    .Output("grads: float")          // [P, kh, kw, Ci, Co]
    .Output("squared_norms: float")  // [P]
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      std::vector<int32_t> kernel_size;
      TF_RETURN_IF_ERROR(c->GetAttr("kernel_size", &kernel_size));
      c->set_output(0, c->MakeShape({c->Dim(c->input(0), 0), kernel_size[0], kernel_size[1], c->Dim(c->input(0), 3),
                                     c->Dim(c->input(1), 3)}));
      c->set_output(1, c->MakeShape({c->Dim(c->input(0), 0)}));
      return absl::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("DptunePerExampleConv2DKernelGrad").Device(tensorflow::DEVICE_CPU),
                        dptune::PerExampleConv2DKernelGradOp);
