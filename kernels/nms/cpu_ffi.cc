// Exact greedy non-maximum suppression for CPUs, as an XLA FFI custom call.
//
// Semantics: exactly those of kernels/nms/reference.py (nms_reference), which the tests check:
// float32 comparisons with subnormals and -0.0 read as +0.0; visiting order score descending,
// then flat (row-major) index ascending; only score > threshold (strictly) is visited, so NaN
// never is; each pick suppresses every pixel at squared distance <= radius^2 inside the image
// (clipped, no wrap-around); the first max_particles picks are returned.
//
// Algorithm: the greedy loop itself, made cheap by never sorting the map.
//   * key: a copy of the map with every pixel that is not (yet) visitable set to -inf (below
//     the threshold, NaN, picked or suppressed), in flat row-major order.
//   * A max pyramid over key: each node of level L+1 holds the maximum of 16 consecutive
//     nodes of level L (level 0 is key; every level padded with -inf to a multiple of 16),
//     up to a single root. Descending from the root into the first child equal to its parent
//     reaches the lowest flat index holding the maximum: the next pixel in visiting order. It
//     is unsuppressed (suppressed pixels are -inf), so it is the next pick.
//   * A pick writes -inf over its disc (ball), one run along the last axis per row. The
//     level-1 nodes whose maximum was among the overwritten pixels are recomputed, then level
//     by level each node with a changed child, up to the root or until nothing changes.
// Cost per pick: the disc's pixels plus a few dozen 16-wide maxima (SSE where available); the
// loop ends at max_particles picks or when the root is -inf.
//
// Batching: leading dimensions before the last `ndim` are a batch, one independent map each
// (jax.ffi.ffi_call with vmap_method="broadcast_all"; the threshold has the batch shape).
//
// Built at run time by kernels/nms/cpu_ffi.py against the installed jaxlib's FFI headers.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kFan = 16;  // children per pyramid node
constexpr float kNone = -std::numeric_limits<float>::infinity();

// Subnormals and -0.0 compare as +0.0 (the reference's rule 1).
inline float Flush(float v) {
  return std::fabs(v) < std::numeric_limits<float>::min() ? 0.0f : v;
}

// The maximum of kFan floats, none of them NaN or -0.0 (so maxps is exact).
inline float Max16(const float* p) {
#if defined(__SSE__) || defined(_M_X64)
  __m128 m = _mm_max_ps(_mm_max_ps(_mm_loadu_ps(p), _mm_loadu_ps(p + 4)),
                        _mm_max_ps(_mm_loadu_ps(p + 8), _mm_loadu_ps(p + 12)));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
#else
  float m = kNone;
  for (int64_t i = 0; i < kFan; ++i) m = p[i] > m ? p[i] : m;
  return m;
#endif
}

// The index of the first of kFan floats equal to v (one of them is).
inline int64_t FirstEqual16(const float* p, float v) {
#if defined(__SSE__) || defined(_M_X64)
  const __m128 w = _mm_set1_ps(v);
  const int bits = _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(p), w)) |
                   _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(p + 4), w)) << 4 |
                   _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(p + 8), w)) << 8 |
                   _mm_movemask_ps(_mm_cmpeq_ps(_mm_loadu_ps(p + 12), w)) << 12;
  int64_t j = 0;
  while (!(bits >> j & 1)) ++j;
  return j;
#else
  int64_t j = 0;
  while (p[j] != v) ++j;
  return j;
#endif
}

int64_t ISqrt(int64_t n) {  // floor(sqrt(n)) for n >= 0, exactly
  int64_t s = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (s * s > n) --s;
  while ((s + 1) * (s + 1) <= n) ++s;
  return s;
}

class Picker {
 public:
  // shape: (depth, height, width); depth is 1 for a 2-D map.
  Picker(int64_t depth, int64_t height, int64_t width, int64_t radius, bool volume)
      : depth_(depth), height_(height), width_(width) {
    int64_t n = depth * height * width;
    do {
      const int64_t padded = (n + kFan - 1) / kFan * kFan;
      levels_.emplace_back(static_cast<size_t>(padded), kNone);
      n = padded / kFan;
    } while (levels_.back().size() > static_cast<size_t>(kFan));
    levels_.emplace_back(1, kNone);  // the root
    // The disc (ball) as runs along the last axis: (dz, dy, half width), rows ascending.
    const int64_t rz = volume ? radius : 0;
    for (int64_t dz = -rz; dz <= rz; ++dz) {
      for (int64_t dy = -radius; dy <= radius; ++dy) {
        const int64_t rest = radius * radius - dz * dz - dy * dy;
        if (rest >= 0) runs_.push_back({dz, dy, ISqrt(rest)});
      }
    }
  }

  // Fills key from the map and builds the pyramid.
  void Load(const float* x, float threshold) {
    const float t = Flush(threshold);
    const int64_t n = depth_ * height_ * width_;
    float* key = levels_[0].data();
    for (int64_t i = 0; i < n; ++i) {
      const float v = Flush(x[i]);
      key[i] = v > t ? v : kNone;  // false for NaN
    }
    for (size_t level = 1; level < levels_.size(); ++level) {
      const std::vector<float>& below = levels_[level - 1];
      std::vector<float>& here = levels_[level];
      const size_t nodes = below.size() / kFan;
      for (size_t i = 0; i < nodes; ++i) here[i] = Max16(below.data() + i * kFan);
    }
  }

  // Runs greedy NMS; writes up to max_picks coordinates (z, y, x or y, x) and returns the count.
  int64_t Run(int64_t max_picks, int32_t* coords, int ndim) {
    int64_t count = 0;
    while (count < max_picks) {
      const float best = levels_.back()[0];
      if (!(best > kNone)) break;
      int64_t flat = 0;
      for (size_t level = levels_.size() - 1; level-- > 0;) {
        const float* child = levels_[level].data() + flat * kFan;
        flat = flat * kFan + FirstEqual16(child, best);
      }
      const int64_t row = flat / width_, x = flat % width_;
      const int64_t z = row / height_, y = row % height_;
      int32_t* out = coords + count * ndim;
      if (ndim == 3) *out++ = static_cast<int32_t>(z);
      out[0] = static_cast<int32_t>(y);
      out[1] = static_cast<int32_t>(x);
      ++count;
      if (count < max_picks) Suppress(z, y, x);
    }
    return count;
  }

 private:
  struct Span_ {
    int64_t dz, dy, half;
  };

  void Suppress(int64_t cz, int64_t cy, int64_t cx) {
    float* key = levels_[0].data();
    float* nodes = levels_[1].data();
    // Level 1 here: a node keeps its maximum unless that was overwritten. Runs come in
    // ascending flat order, so dirty_ (level-2 nodes to recompute) stays sorted and a node
    // is listed once.
    dirty_.clear();
    for (const Span_& run : runs_) {
      const int64_t z = cz + run.dz, y = cy + run.dy;
      if (z < 0 || z >= depth_ || y < 0 || y >= height_) continue;
      const int64_t base = (z * height_ + y) * width_;
      const int64_t a = base + std::max<int64_t>(cx - run.half, 0);
      const int64_t b = base + std::min<int64_t>(cx + run.half, width_ - 1);
      std::fill(key + a, key + b + 1, kNone);
      for (int64_t node = a / kFan; node <= b / kFan; ++node) {
        const float value = Max16(key + node * kFan);
        if (value == nodes[node]) continue;
        nodes[node] = value;
        if (dirty_.empty() || dirty_.back() != node / kFan) dirty_.push_back(node / kFan);
      }
    }
    for (size_t level = 2; level < levels_.size() && !dirty_.empty(); ++level) {
      const float* below = levels_[level - 1].data();
      float* here = levels_[level].data();
      next_.clear();
      for (const int64_t node : dirty_) {
        const float value = Max16(below + node * kFan);
        if (value == here[node]) continue;
        here[node] = value;
        if (next_.empty() || next_.back() != node / kFan) next_.push_back(node / kFan);
      }
      dirty_.swap(next_);
    }
  }

  const int64_t depth_, height_, width_;
  std::vector<std::vector<float>> levels_;  // levels_[0] is key, levels_.back() the root
  std::vector<Span_> runs_;
  std::vector<int64_t> dirty_, next_;
};

ffi::Error NmsImpl(ffi::Buffer<ffi::F32> score_map, ffi::Buffer<ffi::F32> threshold,
                   int64_t radius, int64_t ndim, ffi::ResultBuffer<ffi::S32> coords,
                   ffi::ResultBuffer<ffi::S32> count) {
  const auto dims = score_map.dimensions();
  const int64_t rank = static_cast<int64_t>(dims.size());
  if ((ndim != 2 && ndim != 3) || rank < ndim) {
    return ffi::Error::InvalidArgument("jaxpick_nms: score map of rank " +
                                       std::to_string(rank) + " for ndim " +
                                       std::to_string(ndim));
  }
  if (radius < 0) return ffi::Error::InvalidArgument("jaxpick_nms: negative radius");
  int64_t batch = 1;
  for (int64_t i = 0; i < rank - ndim; ++i) batch *= dims[i];
  const int64_t depth = ndim == 3 ? dims[rank - 3] : 1;
  const int64_t height = dims[rank - 2], width = dims[rank - 1];
  const auto out_dims = coords->dimensions();
  const int64_t max_picks = out_dims[out_dims.size() - 2];
  if (threshold.element_count() != static_cast<size_t>(batch) ||
      count->element_count() != static_cast<size_t>(batch) ||
      out_dims[out_dims.size() - 1] != ndim) {
    return ffi::Error::InvalidArgument("jaxpick_nms: inconsistent batch or output shapes");
  }
  const int64_t pixels = depth * height * width;
  const float* x = score_map.typed_data();
  int32_t* picks = coords->typed_data();
  std::fill(picks, picks + batch * max_picks * ndim, -1);
  if (pixels == 0 || max_picks == 0) {
    std::fill(count->typed_data(), count->typed_data() + batch, 0);
    return ffi::Error::Success();
  }
  Picker picker(depth, height, width, radius, ndim == 3);
  for (int64_t b = 0; b < batch; ++b) {
    picker.Load(x + b * pixels, threshold.typed_data()[b]);
    const int64_t n = picker.Run(max_picks, picks + b * max_picks * ndim, static_cast<int>(ndim));
    count->typed_data()[b] = static_cast<int32_t>(n);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxpickNmsF32, NmsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // score map(s)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // threshold(s)
                                  .Attr<int64_t>("radius")
                                  .Attr<int64_t>("ndim")
                                  .Ret<ffi::Buffer<ffi::S32>>()  // coords [..., K, ndim]
                                  .Ret<ffi::Buffer<ffi::S32>>()  // count [...]
);
