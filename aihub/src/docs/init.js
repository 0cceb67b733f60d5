// The portal: Swagger UI over this server's own OpenAPI document. URLs are relative to /docs,
// so the page also works behind a proxy that mounts AI Hub under a path.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  docExpansion: "list",
  filter: true,
  tryItOutEnabled: true,
  persistAuthorization: true,
  displayRequestDuration: true,
  showExtensions: true,
  // Swagger UI would otherwise send the document to an online validator for a badge.
  validatorUrl: null,
});
