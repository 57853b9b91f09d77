import { SIZE_PRESETS } from './presets';

/** One select for the size presets of every family, used by the generate form and the canvas frame. */
export function SizePresetSelect({ width, height, onChange, name, label }: { width: number; height: number; onChange: (width: number, height: number) => void; name: string; label: string }) {
  const value = `${width}x${height}`;
  const known = SIZE_PRESETS.some((g) => g.presets.some((p) => `${p.width}x${p.height}` === value));
  return (
    <select
      name={name}
      aria-label={label}
      value={known ? value : 'custom'}
      onChange={(e) => {
        const [w, h] = e.target.value.split('x').map(Number);
        if (w && h) onChange(w, h);
      }}
    >
      {!known && (
        <option value="custom">
          {width} × {height}
        </option>
      )}
      {SIZE_PRESETS.map((g) => (
        <optgroup key={g.family} label={g.family}>
          {g.presets.map((p) => (
            <option key={p.label} value={`${p.width}x${p.height}`}>
              {p.label}
            </option>
          ))}
        </optgroup>
      ))}
    </select>
  );
}
