/* Winograd input and output transforms F(4x4, 3x3) and F(4x4, 2x2) on channels-last float32 maps.
 *
 * Part of Boost Depth (boost_core/native_kernels.py compiles this file with the system C compiler when one is
 * present and loads it with ctypes; without one the same numbers come from torch operations). Written for this
 * project from the published Winograd / Toom-Cook matrices (Lavin & Gray, CVPR 2016, for F(4x4, 3x3); points
 * 0, 1, -1, 1/2, infinity for F(4x4, 2x2)); the matrices must equal B_T / A_T of boost_core/winograd.py and
 * boost_core/winograd_stride2.py (tests/test_native_kernels.py compares both paths).
 *
 * Layouts (all float32, channels innermost and contiguous):
 *   input  x   (n, h, w, c) with strides (sn, sh, sw, 1) in floats
 *   tiles      4x4 output tiles, rows x cols per image, tile p = (image, row, col) in that order
 *   V          (A*A, P, c): V[t] at v + t * vs (vs >= P * c: a padded stride keeps the A*A streams from aliasing)
 *   M          (A*A, P, k): M[t] at m + t * ms
 *   output     (n, height, width, k) with strides (on, oh, ow, 1)
 * Tile p = (image, row, col) covers the virtual pixels 4 * row + [0, A) x 4 * col + [0, A); virtual pixel (y, x) is
 * map pixel (top + step * y, left + step * x). Input pixels outside the map read as zeros (the convolution's zero
 * padding); output pixels outside it are not written. step 2 reads one polyphase component of a map (a 4x4 stride-2
 * convolution's space-to-depth) or writes one phase of an up-convolution's output. V rows hold vc >= c channels
 * (several calls fill the channel ranges of one V), M rows mc >= k (a call reads channels [0, k) from m). Each
 * function handles the tiles [p0, p1), so callers split the tiles between threads.
 */
#include <stdint.h>
#include <string.h>

#define TILE 4

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 r; memcpy(&r, p, sizeof r); return r; }
static inline void store8(float *p, v8 x) { memcpy(p, &x, sizeof x); }

static const float BT6[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
static const float AT6[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0},
                                {0, 1, -1, 8, -8, 1}};
static const float BT5[5][5] = {{0.5f, -1, -0.5f, 1, 0}, {0, -0.5f, 0.5f, 1, 0}, {0, 0.5f, -1.5f, 1, 0},
                                {0, -1, 0, 1, 0}, {0, 0.5f, -1, -0.5f, 1}};
static const float AT5[4][5] = {{1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, 0}, {0, 1, 1, 0.25f, 0},
                                {0, 1, -1, 0.125f, 1}};

#define UNROLL _Pragma("GCC unroll 8")

/* V = B^T d B per tile and channel; 8 channels at a time, then one channel at a time for the rest. */
#define INPUT_TRANSFORM(A, BT)                                                                                     \
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
                v8 d[A][A], t[A][A];                                                                               \
                UNROLL for (int l = 0; l < A; ++l) UNROLL for (int j = 0; j < A; ++j) {                            \
                    v8 zero = {0};                                                                                 \
                    d[l][j] = inside[l][j] ? load8(base + (y0 + step * l) * sh + (x0 + step * j) * sw + c0) : zero;\
                }                                                                                                  \
                UNROLL for (int i = 0; i < A; ++i) UNROLL for (int j = 0; j < A; ++j) {                            \
                    v8 s = {0};                                                                                    \
                    UNROLL for (int l = 0; l < A; ++l) if (BT[i][l] != 0.0f) s += BT[i][l] * d[l][j];              \
                    t[i][j] = s;                                                                                   \
                }                                                                                                  \
                UNROLL for (int i = 0; i < A; ++i) UNROLL for (int j = 0; j < A; ++j) {                            \
                    v8 s = {0};                                                                                    \
                    UNROLL for (int l = 0; l < A; ++l) if (BT[j][l] != 0.0f) s += BT[j][l] * t[i][l];              \
                    store8(out + (i * A + j) * vs + c0, s);                                                        \
                }                                                                                                  \
            }                                                                                                      \
            for (; c0 < c; ++c0) {                                                                                 \
                float d[A][A], t[A][A];                                                                            \
                for (int l = 0; l < A; ++l)                                                                        \
                    for (int j = 0; j < A; ++j)                                                                    \
                        d[l][j] = inside[l][j] ? base[(y0 + step * l) * sh + (x0 + step * j) * sw + c0] : 0.0f;    \
                for (int i = 0; i < A; ++i)                                                                        \
                    for (int j = 0; j < A; ++j) {                                                                  \
                        float s = 0;                                                                               \
                        for (int l = 0; l < A; ++l) s += BT[i][l] * d[l][j];                                       \
                        t[i][j] = s;                                                                               \
                    }                                                                                              \
                for (int i = 0; i < A; ++i)                                                                        \
                    for (int j = 0; j < A; ++j) {                                                                  \
                        float s = 0;                                                                               \
                        for (int l = 0; l < A; ++l) s += BT[j][l] * t[i][l];                                       \
                        out[(i * A + j) * vs + c0] = s;                                                            \
                    }                                                                                              \
            }                                                                                                      \
        }                                                                                                          \
    }

/* Y = A^T M A + bias per tile and channel, written where the tile lies inside (height, width). */
#define OUTPUT_TRANSFORM(A, AT)                                                                                    \
    void output_transform_##A(const float *m, int64_t ms, int64_t mc, int64_t k, int64_t rows, int64_t cols,       \
                              const float *bias, float *y, int64_t on, int64_t oh, int64_t ow, int64_t height,     \
                              int64_t width, int64_t top, int64_t left, int64_t step, int64_t p0, int64_t p1) {    \
        for (int64_t p = p0; p < p1; ++p) {                                                                        \
            int64_t img = p / (rows * cols), rem = p % (rows * cols);                                              \
            int64_t y0 = top + step * (rem / cols * TILE), x0 = left + step * (rem % cols * TILE);                 \
            int ok[TILE][TILE], whole = 1;                                                                         \
            for (int i = 0; i < TILE; ++i)                                                                         \
                for (int j = 0; j < TILE; ++j) {                                                                   \
                    ok[i][j] = y0 + step * i >= 0 && y0 + step * i < height && x0 + step * j >= 0 &&               \
                               x0 + step * j < width;                                                              \
                    whole &= ok[i][j];                                                                             \
                }                                                                                                  \
            const float *src = m + p * mc;                                                                         \
            int64_t at = img * on + y0 * oh + x0 * ow; /* pixel (i, j) at y[at + step * (i * oh + j * ow)] */      \
            int64_t k0 = 0;                                                                                        \
            for (; k0 + 8 <= k; k0 += 8) {                                                                         \
                v8 s8[A][A], t[TILE][A], b = {0};                                                                  \
                if (bias) b = load8(bias + k0);                                                                    \
                UNROLL for (int l = 0; l < A; ++l) UNROLL for (int j = 0; j < A; ++j)                              \
                    s8[l][j] = load8(src + (l * A + j) * ms + k0);                                                 \
                UNROLL for (int i = 0; i < TILE; ++i) UNROLL for (int j = 0; j < A; ++j) {                         \
                    v8 s = {0};                                                                                    \
                    UNROLL for (int l = 0; l < A; ++l) if (AT[i][l] != 0.0f) s += AT[i][l] * s8[l][j];             \
                    t[i][j] = s;                                                                                   \
                }                                                                                                  \
                if (whole) {                                                                                       \
                    UNROLL for (int i = 0; i < TILE; ++i) UNROLL for (int j = 0; j < TILE; ++j) {                  \
                        v8 s = b;                                                                                  \
                        UNROLL for (int l = 0; l < A; ++l) if (AT[j][l] != 0.0f) s += AT[j][l] * t[i][l];          \
                        store8(y + at + step * (i * oh + j * ow) + k0, s);                                         \
                    }                                                                                              \
                } else {                                                                                           \
                    for (int i = 0; i < TILE; ++i)                                                                 \
                        for (int j = 0; j < TILE; ++j) {                                                           \
                            if (!ok[i][j]) continue;                                                               \
                            v8 s = b;                                                                              \
                            for (int l = 0; l < A; ++l) s += AT[j][l] * t[i][l];                                   \
                            store8(y + at + step * (i * oh + j * ow) + k0, s);                                     \
                        }                                                                                          \
                }                                                                                                  \
            }                                                                                                      \
            for (; k0 < k; ++k0) {                                                                                 \
                float t[TILE][A];                                                                                  \
                for (int i = 0; i < TILE; ++i)                                                                     \
                    for (int j = 0; j < A; ++j) {                                                                  \
                        float s = 0;                                                                               \
                        for (int l = 0; l < A; ++l) s += AT[i][l] * src[(l * A + j) * ms + k0];                    \
                        t[i][j] = s;                                                                               \
                    }                                                                                              \
                for (int i = 0; i < TILE; ++i)                                                                     \
                    for (int j = 0; j < TILE; ++j) {                                                               \
                        if (!ok[i][j]) continue;                                                                   \
                        float s = bias ? bias[k0] : 0.0f;                                                          \
                        for (int l = 0; l < A; ++l) s += AT[j][l] * t[i][l];                                       \
                        y[at + step * (i * oh + j * ow) + k0] = s;                                                 \
                    }                                                                                              \
            }                                                                                                      \
        }                                                                                                          \
    }

INPUT_TRANSFORM(6, BT6)
OUTPUT_TRANSFORM(6, AT6)
INPUT_TRANSFORM(5, BT5)
OUTPUT_TRANSFORM(5, AT5)

/* ABI check for the loader: bump with any change of the functions' arguments. */
int boost_depth_kernels_abi(void) { return 2; }
