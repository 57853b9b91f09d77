/** Size presets per model family; SDXL's are its training buckets (about one megapixel each). */
export interface SizePreset {
  label: string;
  width: number;
  height: number;
}

export const SIZE_PRESETS: { family: string; presets: SizePreset[] }[] = [
  {
    family: 'SD 1.5',
    presets: [
      { label: '512 × 512 (1:1)', width: 512, height: 512 },
      { label: '512 × 768 (2:3)', width: 512, height: 768 },
      { label: '768 × 512 (3:2)', width: 768, height: 512 },
      { label: '448 × 640 (portrait)', width: 448, height: 640 },
      { label: '640 × 448 (landscape)', width: 640, height: 448 },
    ],
  },
  {
    family: 'SDXL',
    presets: [
      { label: '1024 × 1024 (1:1)', width: 1024, height: 1024 },
      { label: '896 × 1152 (7:9)', width: 896, height: 1152 },
      { label: '1152 × 896 (9:7)', width: 1152, height: 896 },
      { label: '832 × 1216 (2:3)', width: 832, height: 1216 },
      { label: '1216 × 832 (3:2)', width: 1216, height: 832 },
      { label: '768 × 1344 (4:7)', width: 768, height: 1344 },
      { label: '1344 × 768 (7:4)', width: 1344, height: 768 },
      { label: '640 × 1536 (5:12)', width: 640, height: 1536 },
      { label: '1536 × 640 (12:5)', width: 1536, height: 640 },
    ],
  },
  {
    family: 'Small models',
    presets: [
      { label: '64 × 64', width: 64, height: 64 },
      { label: '128 × 128', width: 128, height: 128 },
      { label: '256 × 256', width: 256, height: 256 },
    ],
  },
];
