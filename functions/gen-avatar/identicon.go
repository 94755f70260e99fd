package genavatar

import (
	"bytes"
	"crypto/sha256"
	"image"
	"image/color"
	"image/png"
	"math"
	"sync"
)

// Sizes an avatar may have, in pixels a side.
const (
	MinSize     = 16
	MaxSize     = 512
	DefaultSize = 128
)

// grid is the identicon's cells a side; the left half (with the middle
// column) comes from the hash and is mirrored onto the right.
const grid = 5

// Renderer draws identicons. It is safe for concurrent use, and reuses its
// PNG compression buffers across renders.
type Renderer struct {
	enc png.Encoder
}

// NewRenderer returns a renderer. An avatar is two colours in large flat
// areas, so even the fastest compression level makes it small.
func NewRenderer() *Renderer {
	return &Renderer{enc: png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &bufferPool{}}}
}

// Render draws the identicon of seed as a size×size PNG. The same seed and
// size always give the same bytes: nothing but the seed's SHA-256 picks the
// colour and the cells, and the PNG encoder is deterministic.
func (r *Renderer) Render(seed string, size int) ([]byte, error) {
	h := sha256.Sum256([]byte(seed))
	img := image.NewPaletted(image.Rect(0, 0, size, size), palette(foreground(h)))

	// Which of the 15 left-half cells (3 columns × 5 rows) are filled.
	bits := uint32(h[3])<<8 | uint32(h[4])<<16 | uint32(h[5])
	const half = (grid + 1) / 2
	filled := func(row, col int) bool { return bits>>(row*half+col)&1 == 1 }

	// A margin of a twelfth on each side; cell edges are rounded per cell so
	// the grid fills the inner square exactly at every size.
	pad := size / 12
	inner := size - 2*pad
	edge := func(i int) int { return pad + i*inner/grid }
	rowPix := make([]uint8, size)
	for row := range grid {
		clear(rowPix)
		for col := range half {
			if filled(row, col) {
				for x := edge(col); x < min(edge(col+1), (size+1)/2); x++ {
					rowPix[x] = 1
				}
			}
		}
		// Mirror pixels rather than cells, so the picture is exactly
		// symmetric even when the cells cannot all be the same width.
		for x := range size / 2 {
			rowPix[size-1-x] = rowPix[x]
		}
		for y := edge(row); y < edge(row+1); y++ {
			copy(img.Pix[y*img.Stride:], rowPix)
		}
	}

	var buf bytes.Buffer
	buf.Grow(256 + size*size/8)
	if err := r.enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// palette is the background and fg, padded to 17 entries with the
// background: image/png writes a palette of more than 16 colours as 8-bit
// rows copied straight from the image, while a smaller one is packed pixel
// by pixel through an interface call, several times slower. The padding
// costs 45 bytes of PLTE and compresses away everywhere else.
func palette(fg color.NRGBA) color.Palette {
	p := make(color.Palette, 17)
	for i := range p {
		p[i] = background
	}
	p[1] = fg
	return p
}

// background is a light grey that both light and dark pages show.
var background = color.NRGBA{0xf0, 0xf0, 0xf0, 0xff}

// foreground picks a saturated, mid-light colour from the hash: the hue
// varies, saturation and lightness only a little, so every avatar stands out
// on the background.
func foreground(h [32]byte) color.NRGBA {
	hue := float64(uint16(h[0])<<8|uint16(h[1])) / 65536 * 360
	sat := 0.45 + float64(h[2]%32)/100  // 0.45 .. 0.76
	light := 0.45 + float64(h[2]>>5)/50 // 0.45 .. 0.59
	r, g, b := hsl(hue, sat, light)
	return color.NRGBA{r, g, b, 0xff}
}

func hsl(hue, s, l float64) (uint8, uint8, uint8) {
	c := (1 - math.Abs(2*l-1)) * s
	x := c * (1 - math.Abs(math.Mod(hue/60, 2)-1))
	m := l - c/2
	var r, g, b float64
	switch {
	case hue < 60:
		r, g, b = c, x, 0
	case hue < 120:
		r, g, b = x, c, 0
	case hue < 180:
		r, g, b = 0, c, x
	case hue < 240:
		r, g, b = 0, x, c
	case hue < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	to8 := func(v float64) uint8 { return uint8(math.Round((v + m) * 255)) }
	return to8(r), to8(g), to8(b)
}

// bufferPool is a png.EncoderBufferPool over sync.Pool.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() *png.EncoderBuffer {
	v, _ := b.p.Get().(*png.EncoderBuffer)
	return v
}

func (b *bufferPool) Put(v *png.EncoderBuffer) { b.p.Put(v) }
