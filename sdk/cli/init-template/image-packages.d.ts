// Packages that only a plane function's image installs (Image.npmInstall) are not in node_modules here, so tsc
// would not find them: declare them. `declare module "some-package";` alone is enough, typed as `any`.
// (Or install the package here too, as a devDependency, for its own types.)
declare module "is-number" {
  /** True for a finite number, or a string that holds one. */
  export default function isNumber(value: unknown): boolean;
}
