/** @type {AppTypes.Config} */
// cloudfilm's configuration of the prebuilt OHIF Viewer v3 (replaces dist/app-config.js;
// see frontend/ohif/build.sh). Served uncached at /app-config.js by src/cloudfilm/web/ohif.py.
//
// - One DICOMweb data source: cloudfilm's own /dicomweb on the same origin. Requests carry
//   the HttpOnly session cookie, so there is no token in the URL or in scripts.
// - The OHIF pages live under /ohif (study list /ohif/, viewer /ohif/viewer?...); the
//   bundles are built for the site root, so their files are served at root paths.
// - Unsafe requests authenticated by the session cookie need the session's CSRF token in
//   X-CSRF-Token (cloudfilm's middleware). OHIF only forwards an Authorization header to
//   its DICOMweb clients, so the small shim below adds the token (read from the cf_csrf
//   cookie, which exists for exactly this) to same-origin POST/PUT/PATCH/DELETE requests
//   made with XMLHttpRequest or fetch: that is how "Save measurements" STOWs its SR.
// - OHIF's SR writer copies PatientID but not IssuerOfPatientID from the measured images,
//   and cloudfilm keeps patients apart by (PatientID, IssuerOfPatientID): such an SR would
//   be refused (409, "belongs to another patient"). The onBeforeDicomStore customization
//   below copies the issuer from the measured images' own metadata.
(function addCsrfTokenToUnsafeSameOriginRequests() {
  var SAFE = /^(GET|HEAD|OPTIONS|TRACE)$/i;
  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)cf_csrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : '';
  }
  function sameOrigin(url) {
    try {
      return new URL(url, window.location.href).origin === window.location.origin;
    } catch (e) {
      return false;
    }
  }
  var open = XMLHttpRequest.prototype.open;
  var send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__cfUnsafeSameOrigin = !SAFE.test(String(method)) && sameOrigin(url);
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    var token = this.__cfUnsafeSameOrigin && csrfToken();
    if (token) {
      this.setRequestHeader('X-CSRF-Token', token);
    }
    return send.apply(this, arguments);
  };
  if (window.fetch) {
    var originalFetch = window.fetch;
    window.fetch = function (input, init) {
      var request = input instanceof Request ? input : null;
      var method = (init && init.method) || (request && request.method) || 'GET';
      var url = request ? request.url : String(input);
      var token = !SAFE.test(method) && sameOrigin(url) && csrfToken();
      if (token) {
        var headers = new Headers((init && init.headers) || (request && request.headers) || {});
        if (!headers.has('X-CSRF-Token')) {
          headers.set('X-CSRF-Token', token);
        }
        init = Object.assign({}, init, { headers: headers });
      }
      return originalFetch.call(this, input, init);
    };
  }
})();

/**
 * Give an SR about to be stored the IssuerOfPatientID (and other patient IDs) of the images
 * it measures, when it names the same PatientID. Runs synchronously before OHIF's STOW;
 * reads OHIF's instance metadata through the cornerstone metadata provider. Returns the
 * (untouched) dicomDict, so OHIF still writes the report from naturalizedReport.
 */
function copyPatientIdentityIntoReport({ dicomDict, measurementData, naturalizedReport }) {
  var metaData = window.cornerstone && window.cornerstone.metaData;
  if (!naturalizedReport || naturalizedReport.IssuerOfPatientID || !metaData) {
    return dicomDict;
  }
  var measurements = measurementData || [];
  for (var i = 0; i < measurements.length; i++) {
    var imageId = measurements[i] && measurements[i].referencedImageId;
    var instance = imageId && metaData.get('instance', imageId);
    if (instance && instance.PatientID === naturalizedReport.PatientID && instance.IssuerOfPatientID) {
      naturalizedReport.IssuerOfPatientID = instance.IssuerOfPatientID;
      if (instance.IssuerOfPatientIDQualifiersSequence && !naturalizedReport.IssuerOfPatientIDQualifiersSequence) {
        naturalizedReport.IssuerOfPatientIDQualifiersSequence = instance.IssuerOfPatientIDQualifiersSequence;
      }
      break;
    }
  }
  return dicomDict;
}

window.config = {
  name: 'cloudfilm',
  routerBasename: '/ohif',
  extensions: [],
  modes: [],
  customizationService: {
    onBeforeDicomStore: { $set: copyPatientIdentityIntoReport },
  },
  showStudyList: true,
  // some windows systems have issues with more than 3 web workers
  maxNumberOfWebWorkers: 3,
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  experimentalStudyBrowserSort: false,
  strictZSpacingForVolumeViewport: true,
  groupEnabledModesFirst: true,
  allowMultiSelectExport: false,
  maxNumRequests: {
    interaction: 100,
    thumbnail: 5,
    prefetch: 25,
  },
  showErrorDetails: 'always',
  // Not a cleared medical device: OHIF's own "investigational use" notice stays as shipped.
  defaultDataSourceName: 'cloudfilm',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'cloudfilm',
      configuration: {
        friendlyName: 'cloudfilm',
        name: 'cloudfilm',
        qidoRoot: '/dicomweb',
        wadoRoot: '/dicomweb',
        wadoUriRoot: '/dicomweb',
        qidoSupportsIncludeField: true,
        imageRendering: 'wadors',
        thumbnailRendering: 'thumbnail',
        thumbnailRequestStrategy: 'fetch',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        supportsReject: false,
        dicomUploadEnabled: true,
        singlepart: 'bulkdata,video',
        bulkDataURI: {
          enabled: true,
          relativeResolution: 'studies',
        },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
  httpErrorHandler: error => {
    // Sessions end (logout, expiry): send the person back to sign in, then here again.
    if (error && error.status === 401) {
      var next = window.location.pathname + window.location.search;
      window.location.assign('/login?next=' + encodeURIComponent(next));
      return;
    }
    console.warn('cloudfilm DICOMweb request failed', error && error.status);
  },
};
