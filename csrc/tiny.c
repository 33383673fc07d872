/* Instantiates tiny_impl.inc for float (_f32) and double (_f64), and plans the layout of
 * a tiny network's workspace (fm_tiny_plan). */
#include "fm_internal.h"

int fm_tiny_plan(fm_tiny_net *net, int n_layers, const fm_tiny_layer *layers, int64_t rows)
{
    const int64_t V = FM_TINY_WIDTH;
    int64_t off = 0;
    if (n_layers < 1 || n_layers > FM_TINY_MAX_LAYERS || rows < 1) return 0;
    for (int l = 0; l < n_layers; l++) {
        const fm_tiny_layer *L = &layers[l];
        if (L->fan_in < 1 || L->fan_out < 1 || L->fan_out > V) return 0;
        if (l < n_layers - 1 && L->act != FM_IDENTITY && L->act != FM_RELU
            && L->act != FM_LEAKY_RELU && L->act != FM_TANH && L->act != FM_SIGMOID)
            return 0;
        if (l > 0 && L->fan_in != layers[l - 1].fan_out) return 0;
    }
    memset(net, 0, sizeof *net);
    net->n_layers = n_layers;
    for (int l = 0; l < n_layers; l++) {
        const fm_tiny_layer *L = &layers[l];
        net->layers[l] = *L;
        net->wp_off[l] = off;
        off += L->fan_in * V;
        net->bp_off[l] = off;
        off += V;
        net->wt_off[l] = off;
        off += l > 0 ? L->fan_out * V : 0;
    }
    net->rows = rows;
    net->h_off = off;
    off += (n_layers - 1) * rows * V;
    net->d_off = off;
    off += 2 * rows * V;
    net->size = off;
    return 1;
}

#define REAL float
#define REAL_INT int32_t
#define FM(name) name##_f32
#include "tiny_impl.inc"
#undef REAL
#undef REAL_INT
#undef FM

#define REAL double
#define REAL_INT int64_t
#define FM(name) name##_f64
#include "tiny_impl.inc"
#undef REAL
#undef REAL_INT
#undef FM
