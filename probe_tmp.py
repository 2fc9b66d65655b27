import jax, numpy as np, jax.numpy as jnp
from scmp_jax import quant
from scmp_jax._src import ieee
F32=np.float32
def rnd(shape, seed): return np.random.default_rng(seed).standard_normal(shape).astype(F32)
A = rnd((4, 32), 0)
a2 = np.stack([A, 2*A])
q = jax.vmap(lambda a: quant.quantize(a, sc_prec=5))(a2)
q1 = quant.quantize(2*A, sc_prec=5)
print(np.asarray(q.scale)[1].view(np.int32), np.asarray(q1.scale).view(np.int32))
am = np.abs(2*A).max(-1); print((am/F32(15)).astype(F32).view(np.int32))
d = jax.vmap(lambda x: ieee.div(jnp.max(jnp.abs(x), -1), F32(15)))(a2)
print(np.asarray(d)[1].view(np.int32))
d = jax.jit(jax.vmap(lambda x: jnp.max(jnp.abs(x), -1) / F32(15)))(a2)
print(np.asarray(d)[1].view(np.int32))
print(jax.jit(jax.vmap(lambda x: ieee.div(jnp.max(jnp.abs(x), -1), F32(15)))).lower(a2).compile().as_text()[-3000:])
