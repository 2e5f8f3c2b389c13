// The files the dashboard serves as they are, bundled as text (`import … with { type: "text" }`, esbuild).
declare module "uplot/dist/uPlot.iife.min.js" {
  const text: string;
  export default text;
}
declare module "uplot/dist/uPlot.min.css" {
  const text: string;
  export default text;
}
