/* Winograd input and output transforms F(4x4, 3x3), F(6x6, 3x3) and F(4x4, 2x2) on channels-last float32 maps.
 *
 * Part of Boost Depth (boost_core/native_kernels.py compiles this file with the system C compiler when one is
 * present and loads it with ctypes; without one the same numbers come from torch operations). Written for this
 * project from the published Winograd / Toom-Cook matrices (Lavin & Gray, CVPR 2016, for F(4x4, 3x3); points
 * 0, +-1, +-2, +-1/2, infinity for F(6x6, 3x3); 0, 1, -1, 1/2, infinity for F(4x4, 2x2)); the matrices must equal
 * B_T / A_T of boost_core/winograd.py and boost_core/winograd_stride2.py (tests/test_native_kernels.py compares both
 * paths). Functions are named by the input tile side A: 6 and 5 have 4x4 output tiles, 8 has 6x6 ones (TILE = m).
 * The matrices appear as the one-dimensional transforms BT<A>_1D and AT<A>_1D below.
 *
 * Layouts (all float32, channels innermost and contiguous):
 *   input  x   (n, h, w, c) with strides (sn, sh, sw, 1) in floats
 *   tiles      m x m output tiles (m = TILE), rows x cols per image, tile p = (image, row, col) in that order
 *   V          (A*A, P, c): V[t] at v + t * vs, tile p at + p * vc (the callers use tile-major strides vs = vc / (A*A))
 *   M          (A*A, P, k): M[t] at m + t * ms
 *   output     (n, height, width, k) with strides (on, oh, ow, 1)
 * Tile p = (image, row, col) covers the virtual pixels m * row + [0, A) x m * col + [0, A); virtual pixel (y, x) is
 * map pixel (top + step * y, left + step * x). Input pixels outside the map read as zeros (the convolution's zero
 * padding); output pixels outside it are not written. step 2 reads one polyphase component of a map (a 4x4 stride-2
 * convolution's space-to-depth) or writes one phase of an up-convolution's output. V rows hold vc >= c channels
 * (several calls fill the channel ranges of one V), M rows mc >= k (a call reads channels [0, k) from m). Each
 * function handles the tiles [p0, p1), so callers split the tiles between threads.
 */
#include <stdint.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 r; memcpy(&r, p, sizeof r); return r; }
static inline void store8(float *p, v8 x) { memcpy(p, &x, sizeof x); }

#define UNROLL _Pragma("GCC unroll 8")

/* The one-dimensional transforms y = B^T d (A values in, A out) and y = A^T m (A in, TILE out), written out with
 * the sums and differences that the points +-p share (for F(6x6, 3x3): 30 operations per 8 inputs instead of the
 * 44 of the matrix product, 22 per 6 outputs instead of 39). T is v8 (8 channels) or float (one channel). */
#define BT6_1D(T, d, y)                                                                                            \
    do {                                                                                                           \
        T p_ = d[4] - d[2], q_ = 2 * (d[3] - d[1]);                                                                \
        y[0] = 4 * d[0] - 5 * d[2] + d[4];                                                                         \
        y[1] = d[3] + d[4] - 4 * (d[1] + d[2]);                                                                    \
        y[2] = d[4] - d[3] + 4 * (d[1] - d[2]);                                                                    \
        y[3] = p_ + q_;                                                                                            \
        y[4] = p_ - q_;                                                                                            \
        y[5] = 4 * d[1] - 5 * d[3] + d[5];                                                                         \
    } while (0)

#define AT6_1D(T, m, y)                                                                                            \
    do {                                                                                                           \
        T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];                              \
        y[0] = m[0] + s12 + s34;                                                                                   \
        y[1] = d12 + 2 * d34;                                                                                      \
        y[2] = s12 + 4 * s34;                                                                                      \
        y[3] = d12 + 8 * d34 + m[5];                                                                               \
    } while (0)

#define BT5_1D(T, d, y)                                                                                            \
    do {                                                                                                           \
        y[0] = 0.5f * (d[0] - d[2]) - d[1] + d[3];                                                                 \
        y[1] = 0.5f * (d[2] - d[1]) + d[3];                                                                        \
        y[2] = 0.5f * d[1] - 1.5f * d[2] + d[3];                                                                   \
        y[3] = d[3] - d[1];                                                                                        \
        y[4] = 0.5f * (d[1] - d[3]) - d[2] + d[4];                                                                 \
    } while (0)

#define AT5_1D(T, m, y)                                                                                            \
    do {                                                                                                           \
        T s12 = m[1] + m[2], d12 = m[1] - m[2];                                                                    \
        y[0] = m[0] + s12 + m[3];                                                                                  \
        y[1] = d12 + 0.5f * m[3];                                                                                  \
        y[2] = s12 + 0.25f * m[3];                                                                                 \
        y[3] = d12 + 0.125f * m[3] + m[4];                                                                         \
    } while (0)

#define BT8_1D(T, d, y)                                                                                            \
    do {                                                                                                           \
        T e_, o_;                                                                                                  \
        y[0] = 4 * (d[0] - d[6]) + 21 * (d[4] - d[2]);                                                             \
        y[7] = 4 * (d[7] - d[1]) + 21 * (d[3] - d[5]);                                                             \
        e_ = 17 * d[4] - 4 * (d[2] + d[6]);                                                                        \
        o_ = 17 * d[3] - 4 * (d[1] + d[5]);                                                                        \
        y[1] = e_ + o_;                                                                                            \
        y[2] = e_ - o_;                                                                                            \
        e_ = d[2] - 5 * d[4] + 4 * d[6];                                                                           \
        o_ = 2 * d[1] - 10 * d[3] + 8 * d[5];                                                                      \
        y[3] = e_ + o_;                                                                                            \
        y[4] = e_ - o_;                                                                                            \
        e_ = 8 * d[2] - 10 * d[4] + 2 * d[6];                                                                      \
        o_ = 4 * d[1] - 5 * d[3] + d[5];                                                                           \
        y[5] = e_ + o_;                                                                                            \
        y[6] = e_ - o_;                                                                                            \
    } while (0)

#define AT8_1D(T, m, y)                                                                                            \
    do {                                                                                                           \
        T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];                              \
        T s56 = m[5] + m[6], d56 = m[5] - m[6];                                                                    \
        y[0] = m[0] + s12 + s34 + s56;                                                                             \
        y[1] = d12 + 2 * d34 + 0.5f * d56;                                                                         \
        y[2] = s12 + 4 * s34 + 0.25f * s56;                                                                        \
        y[3] = d12 + 8 * d34 + 0.125f * d56;                                                                       \
        y[4] = s12 + 16 * s34 + 0.0625f * s56;                                                                     \
        y[5] = d12 + 32 * d34 + 0.03125f * d56 + m[7];                                                             \
    } while (0)

/* V = B^T d B per tile and channel: columns first (t[.][j] = B^T d[.][j]), then rows (V[i][.] = t[i][.] B);
 * 8 channels at a time, then one channel at a time for the rest. */
#define INPUT_TRANSFORM(A, TILE, BT_1D)                                                                            \
    void input_transform_##A(const float *x, int64_t sn, int64_t sh, int64_t sw, int64_t h, int64_t w,             \
                             int64_t top, int64_t left, int64_t step, int64_t c, int64_t rows, int64_t cols,       \
                             float *v, int64_t vs, int64_t vc, int64_t p0, int64_t p1) {                           \
        for (int64_t p = p0; p < p1; ++p) {                                                                        \
            int64_t img = p / (rows * cols), rem = p % (rows * cols);                                              \
            int64_t y0 = top + step * (rem / cols * TILE), x0 = left + step * (rem % cols * TILE);                 \
            const float *base = x + img * sn;                                                                      \
            float *out = v + p * vc;                                                                               \
            int inside[A][A];                                                                                      \
            for (int l = 0; l < A; ++l)                                                                            \
                for (int j = 0; j < A; ++j)                                                                        \
                    inside[l][j] = y0 + step * l >= 0 && y0 + step * l < h && x0 + step * j >= 0 &&                \
                                   x0 + step * j < w;                                                              \
            int64_t c0 = 0;                                                                                        \
            for (; c0 + 8 <= c; c0 += 8) {                                                                         \
                v8 t[A][A];                                                                                        \
                for (int j = 0; j < A; ++j) {                                                                      \
                    v8 d[A], y[A], zero = {0};                                                                     \
                    UNROLL for (int l = 0; l < A; ++l)                                                             \
                        d[l] = inside[l][j] ? load8(base + (y0 + step * l) * sh + (x0 + step * j) * sw + c0) : zero; \
                    BT_1D(v8, d, y);                                                                               \
                    UNROLL for (int i = 0; i < A; ++i) t[i][j] = y[i];                                             \
                }                                                                                                  \
                for (int i = 0; i < A; ++i) {                                                                      \
                    v8 y[A];                                                                                       \
                    BT_1D(v8, t[i], y);                                                                            \
                    UNROLL for (int j = 0; j < A; ++j) store8(out + (i * A + j) * vs + c0, y[j]);                  \
                }                                                                                                  \
            }                                                                                                      \
            for (; c0 < c; ++c0) {                                                                                 \
                float t[A][A];                                                                                     \
                for (int j = 0; j < A; ++j) {                                                                      \
                    float d[A], y[A];                                                                              \
                    for (int l = 0; l < A; ++l)                                                                    \
                        d[l] = inside[l][j] ? base[(y0 + step * l) * sh + (x0 + step * j) * sw + c0] : 0.0f;       \
                    BT_1D(float, d, y);                                                                            \
                    for (int i = 0; i < A; ++i) t[i][j] = y[i];                                                    \
                }                                                                                                  \
                for (int i = 0; i < A; ++i) {                                                                      \
                    float y[A];                                                                                    \
                    BT_1D(float, t[i], y);                                                                         \
                    for (int j = 0; j < A; ++j) out[(i * A + j) * vs + c0] = y[j];                                 \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

/* Y = A^T M A + bias per tile and channel (columns first, then rows), written where the tile lies inside
 * (height, width). */
#define OUTPUT_TRANSFORM(A, TILE, AT_1D)                                                                           \
    void output_transform_##A(const float *m, int64_t ms, int64_t mc, int64_t k, int64_t rows, int64_t cols,       \
                              const float *bias, float *y, int64_t on, int64_t oh, int64_t ow, int64_t height,     \
                              int64_t width, int64_t top, int64_t left, int64_t step, int64_t p0, int64_t p1) {    \
        for (int64_t p = p0; p < p1; ++p) {                                                                        \
            int64_t img = p / (rows * cols), rem = p % (rows * cols);                                              \
            int64_t y0 = top + step * (rem / cols * TILE), x0 = left + step * (rem % cols * TILE);                 \
            int ok[TILE][TILE];                                                                                    \
            for (int i = 0; i < TILE; ++i)                                                                         \
                for (int j = 0; j < TILE; ++j)                                                                     \
                    ok[i][j] = y0 + step * i >= 0 && y0 + step * i < height && x0 + step * j >= 0 &&               \
                               x0 + step * j < width;                                                              \
            const float *src = m + p * mc;                                                                         \
            int64_t at = img * on + y0 * oh + x0 * ow; /* pixel (i, j) at y[at + step * (i * oh + j * ow)] */      \
            int64_t k0 = 0;                                                                                        \
            for (; k0 + 8 <= k; k0 += 8) {                                                                         \
                v8 t[TILE][A], b = {0};                                                                            \
                if (bias) b = load8(bias + k0);                                                                    \
                for (int j = 0; j < A; ++j) {                                                                      \
                    v8 s8[A], r[TILE];                                                                             \
                    UNROLL for (int l = 0; l < A; ++l) s8[l] = load8(src + (l * A + j) * ms + k0);                 \
                    AT_1D(v8, s8, r);                                                                              \
                    UNROLL for (int i = 0; i < TILE; ++i) t[i][j] = r[i];                                          \
                }                                                                                                  \
                for (int i = 0; i < TILE; ++i) {                                                                   \
                    v8 r[TILE];                                                                                    \
                    AT_1D(v8, t[i], r);                                                                            \
                    UNROLL for (int j = 0; j < TILE; ++j)                                                          \
                        if (ok[i][j]) store8(y + at + step * (i * oh + j * ow) + k0, r[j] + b);                    \
                }                                                                                                  \
            }                                                                                                      \
            for (; k0 < k; ++k0) {                                                                                 \
                float t[TILE][A], b = bias ? bias[k0] : 0.0f;                                                      \
                for (int j = 0; j < A; ++j) {                                                                      \
                    float s8[A], r[TILE];                                                                          \
                    for (int l = 0; l < A; ++l) s8[l] = src[(l * A + j) * ms + k0];                                \
                    AT_1D(float, s8, r);                                                                           \
                    for (int i = 0; i < TILE; ++i) t[i][j] = r[i];                                                 \
                }                                                                                                  \
                for (int i = 0; i < TILE; ++i) {                                                                   \
                    float r[TILE];                                                                                 \
                    AT_1D(float, t[i], r);                                                                         \
                    for (int j = 0; j < TILE; ++j)                                                                 \
                        if (ok[i][j]) y[at + step * (i * oh + j * ow) + k0] = r[j] + b;                            \
                }                                                                                                  \
            }                                                                                                      \
        }                                                                                                          \
    }

INPUT_TRANSFORM(6, 4, BT6_1D)
OUTPUT_TRANSFORM(6, 4, AT6_1D)
INPUT_TRANSFORM(5, 4, BT5_1D)
OUTPUT_TRANSFORM(5, 4, AT5_1D)
INPUT_TRANSFORM(8, 6, BT8_1D)
OUTPUT_TRANSFORM(8, 6, AT8_1D)

/* ABI check for the loader: bump with any change of the functions' arguments. */
int boost_depth_kernels_abi(void) { return 3; }
