/* The C API as a C program sees it: compiled against include/laic.h, linked to liblaic.so.
 * Run by tests/c_api.rs. Prints "N passed, M failed" and exits non-zero on any failure. */
#include "laic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (cond) {                                                                           \
            passed++;                                                                         \
        } else {                                                                              \
            failed++;                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                  \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
        }                                                                                     \
    } while (0)

static unsigned long long rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / 16777216.0) - 0.5f;
}

/* GradNorm in double from the definition (q = 2, one-hot target, rows normalised). */
static void reference(const float *t, const float *w, size_t m, size_t k, size_t d, double tau,
                      double *score, uint32_t *assign) {
    double *z = malloc(k * sizeof *z);
    for (size_t i = 0; i < m; i++) {
        double tn = 0; for (size_t j = 0; j < d; j++) tn += (double)t[i*d+j] * t[i*d+j];
        tn = sqrt(tn);
        size_t c = 0;
        for (size_t c2 = 0; c2 < k; c2++) {
            double wn = 0, dot = 0;
            for (size_t j = 0; j < d; j++) { wn += (double)w[c2*d+j] * w[c2*d+j]; dot += (double)t[i*d+j] * w[c2*d+j]; }
            z[c2] = dot / (tn * sqrt(wn)) / tau;
            if (z[c2] > z[c]) c = c2;
        }
        double rest = 0, rest2 = 0;
        for (size_t c2 = 0; c2 < k; c2++) if (c2 != c) { double e = exp(z[c2] - z[c]); rest += e; rest2 += e * e; }
        double zs = 1 + rest;
        score[i] = sqrt(rest2 / (zs * zs) + (rest / zs) * (rest / zs)); /* ‖t‖_2 = 1 */
        assign[i] = (uint32_t)c;
    }
    free(z);
}

static int has_message(void) { return laic_last_error() != NULL && strlen(laic_last_error()) > 0; }

int main(void) {
    printf("laic %s\n", laic_version());
    LaicContext *ctx = NULL;
    CHECK(laic_context_create(NULL, &ctx) == LAIC_STATUS_OK, "%s", laic_last_error());
    uint32_t backend = 99;
    CHECK(laic_context_backend(ctx, &backend) == LAIC_STATUS_OK && backend == LAIC_BACKEND_CPU, "backend %u", backend);

    LaicContextOptions copts;
    CHECK(laic_context_options_default(&copts, sizeof copts) == LAIC_STATUS_OK, "defaults");
    CHECK(copts.struct_size == sizeof copts && copts.backend == LAIC_BACKEND_AUTO, "context defaults");
    copts.backend = LAIC_BACKEND_CUDA;
    LaicContext *cuda = NULL;
    LaicStatus st = laic_context_create(&copts, &cuda);
    if (st == LAIC_STATUS_OK) {
        laic_context_free(cuda); /* a machine with a GPU: nothing more to check here */
    } else {
        CHECK(st == LAIC_STATUS_NO_DEVICE && cuda == NULL && has_message(), "cuda status %d", st);
    }
    copts.backend = 7;
    CHECK(laic_context_create(&copts, &cuda) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "bad backend");

    /* Scores against the double reference, at sizes that fit no tile. */
    const size_t m = 77, k = 13, d = 33;
    float *t = malloc(m * d * sizeof *t), *w = malloc(k * d * sizeof *w);
    for (size_t i = 0; i < m * d; i++) t[i] = frand();
    for (size_t i = 0; i < k * d; i++) w[i] = frand();
    LaicMatrix nouns = {t, m, d, d, LAIC_DTYPE_F32}, centres = {w, k, d, d, LAIC_DTYPE_F32};
    LaicGradNormOptions opts;
    CHECK(laic_gradnorm_options_default(&opts, sizeof opts) == LAIC_STATUS_OK, "defaults");
    CHECK(opts.tau == (double)0.02f && opts.q == 2.0 && opts.normalize == 1 && opts.target == LAIC_TARGET_ONE_HOT, "gradnorm defaults");
    opts.tau = 0.05;
    float scores[77], conf[77];
    uint32_t assign[77];
    st = laic_gradnorm_scores(ctx, &nouns, &centres, &opts, scores, assign, conf, m);
    CHECK(st == LAIC_STATUS_OK, "%s", laic_last_error());
    double ref[77]; uint32_t ref_assign[77];
    reference(t, w, m, k, d, (double)(float)0.05, ref, ref_assign);
    for (size_t i = 0; i < m; i++) {
        CHECK(assign[i] == ref_assign[i], "noun %zu assigned %u, want %u", i, assign[i], ref_assign[i]);
        CHECK(fabs(scores[i] - ref[i]) <= 1e-5 * ref[i], "noun %zu score %g, want %g", i, scores[i], ref[i]);
        CHECK(conf[i] > 0 && conf[i] <= 1, "confidence %g", conf[i]);
    }

    /* The same nouns as bf16 in a strided buffer (stride d + 3), optional outputs NULL. */
    uint16_t *tb = calloc(m * (d + 3), sizeof *tb);
    float *tq = malloc(m * d * sizeof *tq);
    for (size_t i = 0; i < m; i++) for (size_t j = 0; j < d; j++) {
        uint32_t bits; memcpy(&bits, &t[i*d+j], 4);
        tb[i*(d+3)+j] = (uint16_t)(bits >> 16);           /* truncation: a valid bf16 value */
        bits &= 0xFFFF0000u; memcpy(&tq[i*d+j], &bits, 4);
    }
    LaicMatrix nouns_bf16 = {tb, m, d, d + 3, LAIC_DTYPE_BF16};
    float scores_bf16[77];
    st = laic_gradnorm_scores(ctx, &nouns_bf16, &centres, &opts, scores_bf16, NULL, NULL, m);
    CHECK(st == LAIC_STATUS_OK, "%s", laic_last_error());
    reference(tq, w, m, k, d, (double)(float)0.05, ref, ref_assign);
    for (size_t i = 0; i < m; i++)
        CHECK(fabs(scores_bf16[i] - ref[i]) <= 1e-5 * ref[i], "bf16 noun %zu score %g, want %g", i, scores_bf16[i], ref[i]);

    /* An options struct from an older, shorter header: only tau is read, the rest default. */
    struct { size_t struct_size; double tau; } old_opts = {sizeof old_opts, 0.05};
    float scores_old[77];
    st = laic_gradnorm_scores(ctx, &nouns, &centres, (const LaicGradNormOptions *)&old_opts, scores_old, NULL, NULL, m);
    CHECK(st == LAIC_STATUS_OK && memcmp(scores_old, scores, sizeof scores) == 0, "older options struct");

    /* Selection: top 2 per centre, sorted, each the smallest of its centre. */
    uint32_t keep[77]; size_t n_keep = 0;
    st = laic_select_nouns(scores, assign, m, k, 2, LAIC_ORDER_SMALLEST, keep, m, &n_keep);
    CHECK(st == LAIC_STATUS_OK && n_keep > 0 && n_keep <= 2 * k, "select: %s", laic_last_error());
    for (size_t i = 1; i < n_keep; i++) CHECK(keep[i - 1] < keep[i], "sorted");
    for (size_t i = 0; i < n_keep; i++) {
        size_t better = 0;
        for (size_t j = 0; j < m; j++)
            if (assign[j] == assign[keep[i]] && scores[j] < scores[keep[i]]) better++;
        CHECK(better < 2, "noun %u has %zu better nouns in its centre", keep[i], better);
    }

    /* Error paths: the right status, a message, and outputs left as they were. */
    float poison[77]; for (size_t i = 0; i < m; i++) poison[i] = -7.0f;
    memcpy(scores, poison, sizeof poison);
    CHECK(laic_gradnorm_scores(ctx, NULL, &centres, &opts, scores, NULL, NULL, m) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "NULL nouns");
    LaicMatrix wrong_d = {w, k, d - 1, d, LAIC_DTYPE_F32};
    CHECK(laic_gradnorm_scores(ctx, &nouns, &wrong_d, &opts, scores, NULL, NULL, m) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "dims");
    CHECK(strstr(laic_last_error(), "columns") != NULL, "message names the mismatch: %s", laic_last_error());
    LaicGradNormOptions bad = opts; bad.tau = 0;
    CHECK(laic_gradnorm_scores(ctx, &nouns, &centres, &bad, scores, NULL, NULL, m) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "tau 0");
    bad = opts; bad.q = 0.5;
    CHECK(laic_gradnorm_scores(ctx, &nouns, &centres, &bad, scores, NULL, NULL, m) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "q < 1");
    CHECK(laic_gradnorm_scores(ctx, &nouns, &centres, &opts, scores, NULL, NULL, m - 1) == LAIC_STATUS_BUFFER_TOO_SMALL && has_message(), "short output");
    t[5] = NAN;
    CHECK(laic_gradnorm_scores(ctx, &nouns, &centres, &opts, scores, NULL, NULL, m) == LAIC_STATUS_INVALID_ARGUMENT && has_message(), "NaN");
    CHECK(memcmp(scores, poison, sizeof poison) == 0, "outputs untouched after errors");
    size_t before = n_keep;
    CHECK(laic_select_nouns(scores_old, assign, m, k, 2, LAIC_ORDER_SMALLEST, keep, 1, &n_keep) == LAIC_STATUS_BUFFER_TOO_SMALL && n_keep == before, "select capacity");

    laic_context_free(ctx);
    laic_context_free(NULL);
    free(t); free(w); free(tb); free(tq);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
