package train

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"math"

	"zhllama/optim"
)

// Comm is the group of ranks a run trains on: MPI's world (internal/mpi's
// World) or, when nil, this process alone.
type Comm interface {
	Rank() int
	Size() int
	// Alltoallv moves values between ranks without arithmetic.
	Alltoallv(send []float32, sendCounts, sendDispls []int, recv []float32, recvCounts, recvDispls []int) error
	Allgatherv(send, recv []float32, counts, displs []int) error
	Gatherv(send, recv []float32, counts, displs []int, root int) error
	// AllgatherBytes returns every rank's message in rank order.
	AllgatherBytes(msg []byte) ([][]byte, error)
}

// alone is the Comm of a run on one process.
type alone struct{}

func (alone) Rank() int { return 0 }
func (alone) Size() int { return 1 }
func (alone) Alltoallv(send []float32, sc, sd []int, recv []float32, rc, rd []int) error {
	copy(recv[rd[0]:rd[0]+rc[0]], send[sd[0]:sd[0]+sc[0]])
	return nil
}
func (alone) Allgatherv(send, recv []float32, counts, displs []int) error {
	copy(recv[displs[0]:], send)
	return nil
}
func (a alone) Gatherv(send, recv []float32, counts, displs []int, root int) error {
	return a.Allgatherv(send, recv, counts, displs)
}
func (alone) AllgatherBytes(msg []byte) ([][]byte, error) { return [][]byte{msg}, nil }

// The gradient exchange works on the trained tensors laid end to end (the
// flat vector), cut into buckets so that its buffers stay small and MPI's
// int32 counts are never exceeded. Each bucket is cut at block boundaries
// into one shard per rank; the rank owning a shard sums it and, with
// ZeRO-1, keeps the optimizer state for it. The gradient norm is a sum of
// float64 partials, one per block, added in block order: blocks do not
// depend on the number of ranks, so neither does the norm.
const (
	normBlock  = 4096
	bucketSize = 1 << 24 // values; a multiple of normBlock
)

// flatVec maps the flat vector onto the trained tensors.
type flatVec struct {
	params []optim.Param
	off    []int // where each tensor starts
	n      int
}

func newFlatVec(params []optim.Param) *flatVec {
	f := &flatVec{params: params}
	for _, p := range params {
		f.off = append(f.off, f.n)
		f.n += len(p.Data)
	}
	return f
}

// each calls fn for the pieces of [lo, hi): tensor i's values [a, b), which
// lie at flat position pos.
func (f *flatVec) each(lo, hi int, fn func(i, a, b, pos int)) {
	for i, p := range f.params {
		a, b := max(lo, f.off[i]), min(hi, f.off[i]+len(p.Data))
		if a < b {
			fn(i, a-f.off[i], b-f.off[i], a)
		}
	}
}

// gradOf and dataOf copy [lo, hi) of the gradients or values into dst;
// setGrad and setData copy src back.
func (f *flatVec) gradOf(dst []float32, lo, hi int) {
	f.each(lo, hi, func(i, a, b, pos int) { copy(dst[pos-lo:], f.params[i].Grad[a:b]) })
}
func (f *flatVec) setGrad(src []float32, lo, hi int) {
	f.each(lo, hi, func(i, a, b, pos int) { copy(f.params[i].Grad[a:b], src[pos-lo:]) })
}
func (f *flatVec) setData(src []float32, lo, hi int) {
	f.each(lo, hi, func(i, a, b, pos int) { copy(f.params[i].Data[a:b], src[pos-lo:]) })
}

// shard is rank's part of a bucket: [lo, hi) of the flat vector.
type shard struct{ lo, hi int }

// layout is the buckets and their shards for a world size.
type layout struct {
	buckets [][]shard // per bucket, per rank
	mine    int       // values this rank owns
}

func newLayout(n, ranks, rank int) layout {
	var l layout
	for lo := 0; lo < n; lo += bucketSize {
		hi := min(n, lo+bucketSize)
		blocks := (hi - lo + normBlock - 1) / normBlock
		sh := make([]shard, ranks)
		for q := range sh {
			sh[q] = shard{min(hi, lo+q*blocks/ranks*normBlock), min(hi, lo+(q+1)*blocks/ranks*normBlock)}
		}
		l.buckets = append(l.buckets, sh)
		l.mine += sh[rank].hi - sh[rank].lo
	}
	return l
}

// parallel is how a Loop combines its micro-batches' gradients across
// ranks, bit for bit as one process with gradient_accumulation_steps·N.
//
// Exactness: float addition is not associative, so the sum must be taken
// in one order whatever N is. The order is a left fold over the step's
// micro-batches in global order, ((g0+g1)+g2)+…, each micro-batch's
// gradient computed into zeroed buffers (out of place), as one process
// does it. Micro-batch k of a step goes to rank k mod N in round k div N.
// After each round the ranks exchange the round's gradients by shard
// (Alltoallv: values are moved, never added by MPI), and each rank folds
// its shard over the round's N micro-batches in order. Summing within a
// rank first and then across ranks would be cheaper (one exchange per step
// rather than one per micro-batch) but groups the sum otherwise, e.g.
// (g0+g1)+(g2+g3) for N=2, g=2, which equals one process only when g=1;
// we pay g× the reduce-scatter bytes for equality at any N and g. Then
// an Allgatherv gives every rank the whole gradient (ZeRO-0), or, with
// ZeRO-1, each rank updates only its shards with its own part of AdamW's
// moments and the ranks all-gather the new values. AdamW works value by
// value, so sharding it changes no bit.
type parallel struct {
	comm  Comm
	zero  int
	flat  *flatVec
	lay   layout
	acc   []float32 // this rank's shards, summed so far
	send  []float32 // a bucket of one micro-batch's gradient
	recv  []float32 // a bucket's shards from every rank
	views []optim.Param
}

func newParallel(comm Comm, zero int, params []optim.Param) *parallel {
	if comm == nil {
		comm = alone{}
	}
	p := &parallel{comm: comm, zero: zero, flat: newFlatVec(params)}
	p.lay = newLayout(p.flat.n, comm.Size(), comm.Rank())
	if zero == 1 {
		// The pieces of the tensors this rank updates, named apart.
		for _, sh := range p.lay.buckets {
			s := sh[comm.Rank()]
			p.flat.each(s.lo, s.hi, func(i, a, b, pos int) {
				t := params[i]
				p.views = append(p.views, optim.Param{Name: fmt.Sprintf("%s@%d", t.Name, a), Data: t.Data[a:b], Grad: t.Grad[a:b], Group: t.Group})
			})
		}
	}
	return p
}

// commBytes is what a rank receives per optimizer step of g rounds: each
// round the other ranks' shards of its own, then the rest of the gradient
// (or, with ZeRO-1, of the new values).
func (p *parallel) commBytes(g int) int64 {
	if p.comm.Size() == 1 {
		return 0
	}
	other := int64(p.flat.n-p.lay.mine) * 4
	return int64(g)*other + other
}

// accumulate runs this rank's micro-batches of a step through run, which
// adds a micro-batch's gradient to the parameters' (k numbers it in the
// run), and leaves the step's gradient, summed in global micro-batch
// order, in the parameters' gradients (with ZeRO-1, in this rank's shards
// only). It returns every micro-batch's result in global order, from
// every rank.
func (p *parallel) accumulate(run func(batch []int, k uint64) Result, micro [][]int, seed uint64) ([]Result, error) {
	n, rank := p.comm.Size(), p.comm.Rank()
	params := p.flat.params
	var mine []Result
	if n == 1 && len(micro) <= 1 {
		// Nothing to add: the gradient is computed in place.
		for _, prm := range params {
			clear(prm.Grad)
		}
		for i, b := range micro {
			mine = append(mine, run(b, seed+uint64(i)))
		}
		return mine, nil
	}
	p.buffers()
	rounds := (len(micro) + n - 1) / n
	for j := 0; j < rounds; j++ {
		for _, prm := range params {
			clear(prm.Grad)
		}
		if k := j*n + rank; k < len(micro) {
			mine = append(mine, run(micro[k], seed+uint64(k)))
		}
		first, last := j*n, min(len(micro), (j+1)*n) // the round's micro-batches
		at := 0                                      // where the bucket's shard lies in acc
		for _, sh := range p.lay.buckets {
			lo, hi := sh[0].lo, sh[n-1].hi
			own := sh[rank].hi - sh[rank].lo
			p.flat.gradOf(p.send, lo, hi)
			sc, sd, rc, rd := make([]int, n), make([]int, n), make([]int, n), make([]int, n)
			for q := range n {
				sc[q], sd[q] = sh[q].hi-sh[q].lo, sh[q].lo-lo
				rc[q], rd[q] = own, q*own
			}
			if err := p.comm.Alltoallv(p.send[:hi-lo], sc, sd, p.recv[:n*own], rc, rd); err != nil {
				return nil, fmt.Errorf("exchanging gradients: %w", err)
			}
			acc := p.acc[at : at+own]
			for k := first; k < last; k++ {
				g := p.recv[(k-first)*own : (k-first+1)*own]
				if k == 0 {
					copy(acc, g)
					continue
				}
				for i, x := range g {
					acc[i] += x
				}
			}
			at += own
		}
	}
	// Put the sums back where the optimizer reads them.
	at := 0
	for _, sh := range p.lay.buckets {
		s := sh[rank]
		own := s.hi - s.lo
		if p.zero == 1 {
			p.flat.setGrad(p.acc[at:at+own], s.lo, s.hi)
		} else if err := p.gather(p.acc[at:at+own], sh, p.flat.setGrad); err != nil {
			return nil, fmt.Errorf("gathering gradients: %w", err)
		}
		at += own
	}
	return p.allResults(mine, len(micro))
}

// buffers allocates the exchange's buffers on first use.
func (p *parallel) buffers() {
	if p.acc == nil {
		// recv holds a whole bucket, or N copies of this rank's shard.
		size, n := 0, p.comm.Size()
		for _, sh := range p.lay.buckets {
			size = max(size, sh[n-1].hi-sh[0].lo, n*(sh[p.comm.Rank()].hi-sh[p.comm.Rank()].lo))
		}
		p.acc = make([]float32, p.lay.mine)
		p.send = make([]float32, min(bucketSize, p.flat.n))
		p.recv = make([]float32, size)
	}
}

// gather all-gathers a bucket from its shards and hands it to set.
func (p *parallel) gather(part []float32, sh []shard, set func(src []float32, lo, hi int)) error {
	n := len(sh)
	lo, hi := sh[0].lo, sh[n-1].hi
	counts, displs := make([]int, n), make([]int, n)
	for q, s := range sh {
		counts[q], displs[q] = s.hi-s.lo, s.lo-lo
	}
	if err := p.comm.Allgatherv(part, p.recv[:hi-lo], counts, displs); err != nil {
		return err
	}
	set(p.recv[:hi-lo], lo, hi)
	return nil
}

// allResults gives every rank the step's micro-batch results in global
// order, so that all of them log, skip and stop alike.
func (p *parallel) allResults(mine []Result, count int) ([]Result, error) {
	n := p.comm.Size()
	if n == 1 {
		return mine, nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(mine); err != nil {
		return nil, err
	}
	msgs, err := p.comm.AllgatherBytes(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gathering losses: %w", err)
	}
	per := make([][]Result, n)
	for q, m := range msgs {
		if err := gob.NewDecoder(bytes.NewReader(m)).Decode(&per[q]); err != nil {
			return nil, fmt.Errorf("rank %d's losses: %w", q, err)
		}
	}
	out := make([]Result, count)
	for k := range out {
		q, j := k%n, k/n
		if j >= len(per[q]) {
			return nil, fmt.Errorf("rank %d sent %d results, micro-batch %d is missing", q, len(per[q]), k)
		}
		out[k] = per[q][j]
	}
	return out, nil
}

// clip returns the gradient's L2 norm and scales the gradient to at most
// maxNorm, as torch.nn.utils.clip_grad_norm_ does; the sum of squares is
// taken by block (see normBlock). With ZeRO-1 each rank measures its own
// blocks and the ranks share the partials.
func (p *parallel) clip(maxNorm float64) (float64, error) {
	var partials []float64
	sq := func(lo, hi int) {
		for b := lo; b < hi; b += normBlock {
			var ss float64
			p.flat.each(b, min(hi, b+normBlock), func(i, a, e, pos int) {
				for _, x := range p.flat.params[i].Grad[a:e] {
					ss += float64(x) * float64(x)
				}
			})
			partials = append(partials, ss)
		}
	}
	var ss float64
	if p.zero == 1 && p.comm.Size() > 1 {
		n := p.comm.Size()
		for _, sh := range p.lay.buckets {
			sq(sh[p.comm.Rank()].lo, sh[p.comm.Rank()].hi)
		}
		msg := make([]byte, 8*len(partials))
		for i, v := range partials {
			binary.LittleEndian.PutUint64(msg[8*i:], math.Float64bits(v))
		}
		msgs, err := p.comm.AllgatherBytes(msg)
		if err != nil {
			return 0, fmt.Errorf("gathering the gradient norm: %w", err)
		}
		// Add the blocks in flat order: bucket by bucket, rank by rank.
		at := make([]int, n)
		for _, sh := range p.lay.buckets {
			for q, s := range sh {
				for b := s.lo; b < s.hi; b += normBlock {
					if at[q]+8 > len(msgs[q]) {
						return 0, fmt.Errorf("rank %d sent %d norm partials, fewer than its shards have blocks", q, len(msgs[q])/8)
					}
					ss += math.Float64frombits(binary.LittleEndian.Uint64(msgs[q][at[q]:]))
					at[q] += 8
				}
			}
		}
	} else {
		sq(0, p.flat.n)
		for _, v := range partials {
			ss += v
		}
	}
	norm := math.Sqrt(ss)
	if c := maxNorm / (norm + 1e-6); c < 1 {
		scale := func(lo, hi int) {
			p.flat.each(lo, hi, func(i, a, b, pos int) {
				g := p.flat.params[i].Grad[a:b]
				for j := range g {
					g[j] *= float32(c)
				}
			})
		}
		if p.zero == 1 {
			for _, sh := range p.lay.buckets {
				scale(sh[p.comm.Rank()].lo, sh[p.comm.Rank()].hi)
			}
		} else {
			scale(0, p.flat.n)
		}
	}
	return norm, nil
}

// afterStep all-gathers the values each rank updated (ZeRO-1).
func (p *parallel) afterStep() error {
	if p.zero != 1 || p.comm.Size() == 1 {
		return nil
	}
	p.buffers()
	for _, sh := range p.lay.buckets {
		s := sh[p.comm.Rank()]
		own := p.send[:s.hi-s.lo]
		p.flat.each(s.lo, s.hi, func(i, a, b, pos int) { copy(own[pos-s.lo:], p.flat.params[i].Data[a:b]) })
		if err := p.gather(own, sh, p.flat.setData); err != nil {
			return fmt.Errorf("gathering updated values: %w", err)
		}
	}
	return nil
}

// shardedAdamW is AdamW over this rank's shards (ZeRO-1). Its checkpoint
// state is the whole of AdamW's, as one process saves it, so a checkpoint
// does not depend on the number of ranks.
type shardedAdamW struct {
	*optim.AdamW
	p    *parallel
	full map[string][]float32 // whole tensors, for loading
}

func newShardedAdamW(p *parallel, groups []optim.Group) *shardedAdamW {
	return &shardedAdamW{AdamW: optim.NewAdamW(p.views, groups), p: p}
}

// stateKinds are AdamW's state tensors' name prefixes.
var stateKinds = []string{"exp_avg", "exp_avg_sq"}

// State returns whole-tensor buffers for optim.LoadState to fill; keep
// then takes this rank's shards of them.
func (o *shardedAdamW) State() map[string][]float32 {
	o.full = map[string][]float32{}
	for _, t := range o.p.flat.params {
		for _, k := range stateKinds {
			o.full[k+"."+t.Name] = make([]float32, len(t.Data))
		}
	}
	return o.full
}

// keep copies this rank's shards of the loaded state into the optimizer.
func (o *shardedAdamW) keep() {
	st := o.AdamW.State()
	params := o.p.flat.params
	for _, sh := range o.p.lay.buckets {
		s := sh[o.p.comm.Rank()]
		o.p.flat.each(s.lo, s.hi, func(i, a, b, pos int) {
			for _, k := range stateKinds {
				copy(st[fmt.Sprintf("%s.%s@%d", k, params[i].Name, a)], o.full[k+"."+params[i].Name][a:b])
			}
		})
	}
	o.full = nil
}

// gathered returns the whole state on rank 0 (nil on the others); every
// rank must call it.
func (o *shardedAdamW) gathered() (map[string][]float32, error) {
	st := o.AdamW.State()
	rank := o.p.comm.Rank()
	o.p.buffers()
	var out map[string][]float32
	if rank == 0 {
		out = map[string][]float32{}
		for _, t := range o.p.flat.params {
			for _, k := range stateKinds {
				out[k+"."+t.Name] = make([]float32, len(t.Data))
			}
		}
	}
	params := o.p.flat.params
	for _, k := range stateKinds {
		for _, sh := range o.p.lay.buckets {
			s := sh[rank]
			own := o.p.send[:s.hi-s.lo]
			o.p.flat.each(s.lo, s.hi, func(i, a, b, pos int) {
				copy(own[pos-s.lo:], st[fmt.Sprintf("%s.%s@%d", k, params[i].Name, a)])
			})
			n := len(sh)
			lo, hi := sh[0].lo, sh[n-1].hi
			counts, displs := make([]int, n), make([]int, n)
			for q, s := range sh {
				counts[q], displs[q] = s.hi-s.lo, s.lo-lo
			}
			if err := o.p.comm.Gatherv(own, o.p.recv[:hi-lo], counts, displs, 0); err != nil {
				return nil, fmt.Errorf("gathering optimizer state: %w", err)
			}
			if rank == 0 {
				o.p.flat.each(lo, hi, func(i, a, b, pos int) {
					copy(out[k+"."+params[i].Name][a:b], o.p.recv[pos-lo:])
				})
			}
		}
	}
	return out, nil
}

// stateBytes is the optimizer state this rank holds, and what one process
// would hold.
func (p *parallel) stateBytes(adam bool) (mine, whole int64) {
	if !adam {
		return 0, 0
	}
	whole = int64(p.flat.n) * 8
	if p.zero == 1 {
		return int64(p.lay.mine) * 8, whole
	}
	return whole, whole
}
